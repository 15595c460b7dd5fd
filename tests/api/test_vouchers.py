"""The vouchers API: a merchant verifies and redeems a cardholder's voucher once; every other merchant, and every test
key, gets a 404; `voucher.redeemed` goes to the merchant's webhooks."""

from __future__ import annotations

from typing import Any

import pytest

from merchants.models import Event, Store
from rewards import selectors
from rewards import services as s
from rewards.models import Voucher
from tests.api.conftest import new_api
from tests.factories import CardholderFactory, MerchantFactory, card_at, make_benefit

pytestmark = pytest.mark.django_db


def _voucher(merchant: Any, **benefit: Any) -> tuple[Voucher, str]:
    made = make_benefit(bank=merchant.sponsor_bank, merchant=merchant, kind="voucher", price_points=10, **benefit)
    program = made.price_program
    card = card_at(CardholderFactory(), program.bank)
    s.points_earn(cardholder_id=card.cardholder_id, program=program, amount=100, idempotency_key=f"seed{card.pk}")
    voucher = s.benefit_redeem(
        cardholder_id=card.cardholder_id,
        card_id=card.pk,
        benefit_id=made.pk,
        points={program.pk: 10},
        idempotency_key=f"v{card.pk}",
    )
    [view] = selectors.vouchers_of(cardholder_id=card.cardholder_id)
    return voucher, view.code


def test_verify_then_redeem_once_with_the_event() -> None:
    merchant = MerchantFactory()
    api = new_api(merchant, mode="live")
    voucher, code = _voucher(merchant)
    shown = f"{code[:4]}-{code[4:8]}-{code[8:12]}-{code[12:].lower()}"  # as printed, typed in lower case
    status, body = api.get(f"vouchers/{shown}")
    assert status == 200, body
    assert (body["state"], body["code_hint"], body["benefit"]["title_en"]) == ("issued", code[-4:], "Test benefit")
    assert body["valid_until"] == int(voucher.expires_at.timestamp())
    assert code not in str(body)
    status, body = api.post(f"vouchers/{code}/redeem", {}, key="till-1")
    assert (status, body["state"]) == (200, "redeemed")
    assert api.post(f"vouchers/{code}/redeem", {}, key="till-1") == (200, body)  # a replay of the same request
    status, again = api.post(f"vouchers/{code}/redeem", {}, key="till-2")
    assert (status, again["error"]["code"]) == (409, "voucher_redeemed")
    [event] = Event.objects.filter(merchant=merchant, type="voucher.redeemed")
    assert (event.payload["id"], event.payload["state"], event.livemode) == (f"vch_{voucher.pk}", "redeemed", True)


def test_a_voucher_is_404_to_another_merchant_to_a_test_key_and_for_a_made_up_code() -> None:
    merchant, stranger = MerchantFactory(), MerchantFactory()
    _voucher_obj, code = _voucher(merchant)
    for api in (new_api(stranger, mode="live"), new_api(merchant, mode="test")):
        assert api.get(f"vouchers/{code}")[0] == 404
        status, body = api.post(f"vouchers/{code}/redeem", {})
        assert (status, body["error"]["code"]) == (404, "resource_missing")
    live = new_api(merchant, mode="live")
    assert live.get("vouchers/AAAAAAAAAAAAAAAA")[0] == 404
    assert live.get("vouchers/not-a-code!")[0] == 404
    assert Voucher.objects.get().state == Voucher.State.ISSUED


def test_a_voucher_listing_stores_is_redeemed_only_at_one_of_them() -> None:
    merchant = MerchantFactory()
    listed = Store.objects.create(merchant=merchant, code="SH-1", name="Nanjing Road")
    Store.objects.create(merchant=merchant, code="BJ-1", name="Wangfujing")
    _voucher_obj, code = _voucher(merchant, stores=[listed])
    api = new_api(merchant, mode="live")
    assert api.get(f"vouchers/{code}")[1]["stores"] == ["SH-1"]
    for body, expected in (({}, "store_not_accepted"), ({"store": "BJ-1"}, "store_not_accepted")):
        status, answer = api.post(f"vouchers/{code}/redeem", body)
        assert (status, answer["error"]["code"]) == (422, expected)
    assert api.post(f"vouchers/{code}/redeem", {"store": "XX"})[0] == 422
    assert api.post(f"vouchers/{code}/redeem", {"store": "SH-1", "extra": 1})[0] == 400
    status, body = api.post(f"vouchers/{code}/redeem", {"store": "SH-1"})
    assert (status, body["redeemed_store"]) == (200, "SH-1")


def test_an_expired_voucher_is_refused_at_the_till() -> None:
    from django.utils import timezone

    merchant = MerchantFactory()
    voucher, code = _voucher(merchant)
    Voucher.objects.filter(pk=voucher.pk).update(expires_at=timezone.now())
    status, body = new_api(merchant, mode="live").post(f"vouchers/{code}/redeem", {})
    assert (status, body["error"]["code"]) == (409, "voucher_expired")
