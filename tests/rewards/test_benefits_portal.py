"""The benefit pages of the portal: the catalogue shows only what this cardholder may redeem now with its quota and
stock left; the preview is the domain's quote; redeeming through the page happens once per rendered page; the
vouchers page shows the holder's own with a QR drawn here; cancelling returns the points; a card's page shows its
privileges."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from rewards import selectors
from rewards import services as s
from rewards.models import Benefit, Voucher
from tests.factories import MemberBankFactory, PointsProgramFactory, card_at, make_benefit, make_cardholder
from tests.i18n import shown
from tests.rewards.portal import posted, signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def holder() -> dict[str, Any]:
    """A cardholder with a card at bank A and 10,000 of A's points (worth 0.003 each) and 500 of bank B's (0.01)."""
    person = make_cardholder()
    a = PointsProgramFactory(point_value_cny=Decimal("0.003"))
    b = PointsProgramFactory(point_value_cny=Decimal("0.01"))
    card = card_at(person, a.bank)
    s.points_earn(cardholder_id=person.pk, program=a, amount=10_000, idempotency_key="earn-a")
    s.points_earn(cardholder_id=person.pk, program=b, amount=500, idempotency_key="earn-b")
    return {"holder": person, "card": card, "a": a, "b": b}


def _redeem_page(client: Client, benefit: Benefit) -> tuple[str, Any]:
    response = client.get(reverse("rewards_portal:benefit", args=[benefit.pk]))
    assert response.status_code == 200
    return response.content.decode(), response.context["form"]


def test_the_catalogue_shows_only_what_the_holder_may_redeem_now_with_quota_and_stock_left(
    holder: dict[str, Any],
) -> None:
    bank_a = holder["a"].bank
    mine = make_benefit(bank=bank_a, price_program=holder["a"], stock_total=5, limit_per_month=2)
    lounge = make_benefit(bank=bank_a, price_program=holder["a"], kind=Benefit.Kind.LOUNGE)
    other_bank = make_benefit(eligible_banks=[MemberBankFactory()])
    used_up = make_benefit(bank=bank_a, price_program=holder["a"], limit_per_card=1)
    make_benefit(bank=bank_a, price_program=holder["a"], status=Benefit.Status.DRAFT)
    make_benefit(bank=bank_a, price_program=holder["a"], stock_total=0)
    s.benefit_redeem(
        cardholder_id=holder["holder"].pk,
        card_id=holder["card"].pk,
        benefit_id=used_up.pk,
        points={holder["a"].pk: 1000},
        idempotency_key="used",
    )
    client = signed_in(holder["holder"])

    response = client.get(reverse("rewards_portal:benefits"))
    assert response.status_code == 200
    assert [offer.benefit.pk for offer in response.context["offers"]] == [mine.pk, lounge.pk]
    page = response.content.decode()
    entry = page[page.index(f'data-benefit="{mine.pk}"') : page.index(f'data-benefit="{lounge.pk}"')]
    assert '<dd data-field="quota-left">2</dd>' in entry
    assert '<dd data-field="stock-left">5</dd>' in entry
    assert reverse("rewards_portal:benefit", args=[mine.pk]) in entry
    assert reverse("rewards_portal:benefit", args=[other_bank.pk]) not in page

    lounges = client.get(reverse("rewards_portal:benefits"), {"kind": "lounge"})
    assert [offer.benefit.pk for offer in lounges.context["offers"]] == [lounge.pk]
    bad = client.get(reverse("rewards_portal:benefits"), {"kind": "spaceship"})
    assert bad.status_code == 400
    assert len(bad.context["offers"]) == 2


def test_the_preview_is_the_domains_quote_and_refusals_are_its_own(holder: dict[str, Any]) -> None:
    a, b = holder["a"], holder["b"]
    benefit = make_benefit(bank=a.bank, pricing=Benefit.Pricing.CNY, price_cny_units=100_000)  # CNY 10
    client = signed_in(holder["holder"])
    url = reverse("rewards_portal:benefit_quote", args=[benefit.pk])

    response = client.get(url, {f"p{b.pk}": "400", "rest": str(a.pk)})
    assert response.status_code == 200
    quote = selectors.benefit_quote(benefit_id=benefit.pk, points={b.pk: 400, a.pk: None})
    # 400 × 0.01 = 4, the rest 6 / 0.003 = 2,000 of A's points.
    assert response.json() == {
        "lines": [
            {"program_id": line.program_id, "unit": line.unit, "points": line.points, "value_cny": value}
            for line, value in zip(quote.lines, ["6.0000", "4.0000"], strict=True)
        ],
        "total_value_cny": "10.0000",
    }
    assert quote.points == {a.pk: 2000, b.pk: 400}

    exceeded = client.get(url, {f"p{a.pk}": "3000", f"p{b.pk}": "400"})
    assert exceeded.status_code == 422
    assert exceeded.json()["error"]["code"] == "price_exceeded"
    stranger = PointsProgramFactory()  # not one of the holder's programmes: not a field, so not paid with
    assert client.get(url, {f"p{stranger.pk}": "1000"}).json()["error"]["code"] == "validation_failed"
    assert client.get(url, {"rest": str(stranger.pk)}).status_code == 400
    assert client.get(url, {f"p{a.pk}": "lots"}).status_code == 400


def test_redeeming_through_the_page_twice_issues_one_voucher(holder: dict[str, Any]) -> None:
    a = holder["a"]
    benefit = make_benefit(bank=a.bank, price_program=a, price_points=1000, stock_total=1, limit_per_month=1)
    client = signed_in(holder["holder"])
    page, form = _redeem_page(client, benefit)
    assert 'name="csrfmiddlewaretoken"' in page
    key = form.initial["idempotency_key"]
    assert f'value="{key}"' in page
    body = {"card": holder["card"].pk, "idempotency_key": key}

    first = client.post(reverse("rewards_portal:benefit", args=[benefit.pk]), body)
    again = client.post(reverse("rewards_portal:benefit", args=[benefit.pk]), body)  # sold out and quota used by now
    assert first.status_code == again.status_code == 302
    assert first["Location"] == again["Location"] == reverse("rewards_portal:vouchers")
    assert Voucher.objects.filter(cardholder=holder["holder"]).count() == 1
    assert posted(holder["holder"], a) == 9_000
    benefit.refresh_from_db()
    assert (benefit.stock_left, benefit.redeemed_count) == (0, 1)


def test_a_refusal_is_shown_on_the_page_and_writes_nothing(holder: dict[str, Any]) -> None:
    b = holder["b"]
    benefit = make_benefit(bank=holder["a"].bank, pricing=Benefit.Pricing.CNY, price_cny_units=100_000, stock_total=3)
    client = signed_in(holder["holder"])
    _, form = _redeem_page(client, benefit)
    response = client.post(
        reverse("rewards_portal:benefit", args=[benefit.pk]),
        {"card": holder["card"].pk, "idempotency_key": form.initial["idempotency_key"], "rest": str(b.pk)},
    )  # 1,000 of B's points needed, 500 held
    assert response.status_code == 400
    assert response.context["form"].non_field_errors()
    assert 'class="errorlist' in response.content.decode()
    assert not Voucher.objects.exists()
    assert posted(holder["holder"], b) == 500
    benefit.refresh_from_db()
    assert (benefit.stock_left, benefit.redeemed_count) == (3, 0)


def test_my_vouchers_shows_the_code_and_its_qr_and_cancelling_returns_the_points(holder: dict[str, Any]) -> None:
    a = holder["a"]
    benefit = make_benefit(bank=a.bank, price_program=a, price_points=1000, stock_total=10)
    client = signed_in(holder["holder"])
    _, form = _redeem_page(client, benefit)
    client.post(
        reverse("rewards_portal:benefit", args=[benefit.pk]),
        {"card": holder["card"].pk, "idempotency_key": form.initial["idempotency_key"]},
    )
    voucher = Voucher.objects.get(cardholder=holder["holder"])
    code = selectors.vouchers_of(cardholder_id=holder["holder"].pk)[0].code

    page = client.get(reverse("rewards_portal:vouchers")).content.decode()
    grouped = "-".join(re.findall("....", code))
    assert f'<code data-field="code">{grouped}</code>' in page
    assert '<figure class="qr"' in page
    assert "<svg" in page
    assert "http" not in page[page.index("<svg") : page.index("</svg>")].replace("http://www.w3.org/2000/svg", "")
    assert reverse("rewards_portal:voucher_cancel", args=[voucher.pk]) in page
    assert posted(holder["holder"], a) == 9_000

    response = client.post(reverse("rewards_portal:voucher_cancel", args=[voucher.pk]))
    assert response.status_code == 302
    voucher.refresh_from_db()
    assert voucher.state == Voucher.State.CANCELLED
    assert posted(holder["holder"], a) == 10_000
    benefit.refresh_from_db()
    assert benefit.stock_left == 10
    after = client.get(reverse("rewards_portal:vouchers")).content.decode()
    assert shown("cancelled") in after
    assert "<svg" not in after  # a cancelled voucher shows no QR to scan
    assert reverse("rewards_portal:voucher_cancel", args=[voucher.pk]) not in after

    again = client.post(reverse("rewards_portal:voucher_cancel", args=[voucher.pk]), follow=True)
    assert shown("This voucher was cancelled.") in again.content.decode()
    assert posted(holder["holder"], a) == 10_000


def test_another_cardholders_voucher_is_not_found(holder: dict[str, Any]) -> None:
    a = holder["a"]
    benefit = make_benefit(bank=a.bank, price_program=a, price_points=1000)
    voucher = s.benefit_redeem(
        cardholder_id=holder["holder"].pk,
        card_id=holder["card"].pk,
        benefit_id=benefit.pk,
        points={a.pk: 1000},
        idempotency_key="theirs",
    )
    stranger = make_cardholder()
    client = signed_in(stranger)
    assert client.post(reverse("rewards_portal:voucher_cancel", args=[voucher.pk])).status_code == 404
    assert voucher.code_hint not in client.get(reverse("rewards_portal:vouchers")).content.decode()
    voucher.refresh_from_db()
    assert voucher.state == Voucher.State.ISSUED
    assert posted(holder["holder"], a) == 9_000
    # Nor can a stranger redeem with the holder's card: it is not one of theirs to choose.
    response = client.post(
        reverse("rewards_portal:benefit", args=[benefit.pk]),
        {"card": holder["card"].pk, "idempotency_key": "00000000-0000-0000-0000-000000000001"},
    )
    assert response.status_code == 400
    assert Voucher.objects.count() == 1


def test_a_cards_page_shows_its_privileges(holder: dict[str, Any]) -> None:
    bank_a = holder["a"].bank
    lounge = make_benefit(
        bank=bank_a,
        pricing=Benefit.Pricing.FREE,
        kind=Benefit.Kind.LOUNGE,
        title_zh="机场贵宾厅",
        eligible_banks=[bank_a],
    )
    elsewhere = make_benefit(pricing=Benefit.Pricing.FREE, title_zh="别家礼遇", eligible_banks=[MemberBankFactory()])
    priced = make_benefit(bank=bank_a, title_zh="积分兑换", eligible_banks=[bank_a])
    client = signed_in(holder["holder"])
    page = client.get(reverse("members:card_detail", args=[holder["card"].pk])).content.decode()
    block = page[page.index('id="card-privileges"') :]
    assert "机场贵宾厅" in block
    assert reverse("rewards_portal:benefit", args=[lounge.pk]) in block
    assert reverse("rewards_portal:benefit", args=[elsewhere.pk]) not in block
    assert reverse("rewards_portal:benefit", args=[priced.pk]) not in block

    # A free privilege is redeemed from its page with no points.
    _, form = _redeem_page(client, lounge)
    client.post(
        reverse("rewards_portal:benefit", args=[lounge.pk]),
        {"card": holder["card"].pk, "idempotency_key": form.initial["idempotency_key"]},
    )
    voucher = Voucher.objects.get(benefit=lounge)
    assert (voucher.cardholder_id, voucher.cost_units) == (holder["holder"].pk, 0)


def test_the_pages_need_a_signed_in_cardholder_and_are_linked_from_the_navigation(holder: dict[str, Any]) -> None:
    for name in ("benefits", "vouchers"):
        response = Client().get(reverse(f"rewards_portal:{name}"))
        assert response.status_code == 302
        assert "login" in response["Location"] or "sign" in response["Location"]
    page = signed_in(holder["holder"]).get(reverse("rewards_portal:vouchers")).content.decode()
    assert f'href="{reverse("rewards_portal:benefits")}"' in page
    assert f'href="{reverse("rewards_portal:vouchers")}"' in page
