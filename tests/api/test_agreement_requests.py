"""The hosted grant flow over HTTP: a merchant asks for an agreement, the cardholder grants (or declines) it on the
page Mengka hosts and is sent back, the merchant hears `agreement.granted` and collects the token once, and pays
with it; revoking in the portal tells the merchant and stops the token."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from core.models import AuditLog
from merchants.models import Event
from payments.methods import agreement_request_grant
from payments.models import Agreement, AgreementRequest, PaymentIntent
from tests.api.conftest import World, idem, new_api
from tests.concurrency import run_parallel
from tests.factories import ChannelFactory, make_linked_account
from tests.i18n import shown

pytestmark = pytest.mark.django_db
RETURN_URL = "https://shop.example/agreements/done?order=7&note=a%20b"


def _create(api: Any, **overrides: Any) -> tuple[int, Any]:
    body = {
        "limits": {"per_payment": 20_000, "per_month": 100_000},
        "purpose": "Coffee subscription",
        "return_url": RETURN_URL,
        **overrides,
    }
    return api.post("agreement-requests", body, key=idem())


def _portal(world: World) -> Client:
    client = Client()
    client.force_login(world.card.cardholder.user)
    return client


def _page(request_id: str) -> str:
    return f"/portal/pay/agreements/grant/{request_id}/"


def _pay(api: Any, method: dict[str, Any], amount: int = 1500) -> tuple[int, Any]:
    return api.post(
        "payments", {"amount": amount, "currency": "CNY", "confirm": True, "payment_method": method}, key=idem()
    )


def _granted_events(world: World) -> list[Event]:
    return list(Event.objects.filter(merchant=world.merchant, type="agreement.granted"))


@pytest.fixture
def wallet(world: World) -> Any:
    """A wallet of the world's cardholder, kept by wallet channels that take balance payments only."""
    for channel in world.merchant.sponsor_bank.channels.all():
        channel.methods = ["card", "payment_code", "agreement"]
        channel.save()
    account = make_linked_account(cardholder=world.card.cardholder)
    ChannelFactory(acquirer=account.bank, kind="wallet", code="wallet-live", methods=["balance"])
    ChannelFactory(acquirer=account.bank, kind="wallet", code="wallet-sandbox", methods=["balance"], sandbox=True)
    return account


def test_a_card_grant_end_to_end(world: World) -> None:
    status, created = _create(world.api)
    assert status == 201, created
    request_id = created["id"]
    assert request_id.startswith("agrq_")
    assert created["object"] == "agreement_request"
    assert (created["status"], created["currency"], created["agreement"], created["livemode"]) == (
        "pending",
        "CNY",
        None,
        False,
    )
    assert created["limits"] == {"per_payment": 20_000, "per_month": 100_000}
    assert (created["purpose"], created["return_url"]) == ("Coffee subscription", RETURN_URL)
    assert created["url"] == f"http://testserver{_page(request_id)}"
    assert created["expires"] - created["created"] == 3600
    assert world.api.get(f"agreement-requests/{request_id}") == (200, created)

    # The page asks the cardholder to sign in first and brings them back to it.
    anonymous = Client().get(_page(request_id))
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/accounts/login/?next=")
    assert _page(request_id) in anonymous["Location"].replace("%2F", "/")

    portal = _portal(world)
    page = portal.get(_page(request_id))
    assert page.status_code == 200
    text = page.content.decode()
    assert world.merchant.display_name in text
    assert "Coffee subscription" in text
    assert f'value="card:{world.card.pk}"' in text

    granted = portal.post(_page(request_id), {"source": f"card:{world.card.pk}", "decision": "grant"})
    assert granted.status_code == 302
    back = urlsplit(granted["Location"])
    assert (back.scheme, back.netloc, back.path) == ("https", "shop.example", "/agreements/done")
    assert parse_qs(back.query) == {
        "order": ["7"],
        "note": ["a b"],
        "agreement_request": [request_id],
        "status": ["granted"],
    }

    status, answered = world.api.get(f"agreement-requests/{request_id}")
    assert (status, answered["status"]) == (200, "granted")
    agreement = Agreement.objects.get(public_id=answered["agreement"])
    assert (agreement.card, agreement.cardholder, agreement.merchant) == (
        world.card,
        world.card.cardholder,
        world.merchant,
    )
    assert (agreement.limit_per_payment, agreement.limit_per_month) == (20_000, 100_000)

    # The event tells the merchant which agreement, never its token.
    [event] = _granted_events(world)
    assert event.livemode is False
    assert event.payload["id"] == agreement.public_id
    assert event.payload["token"] is None
    assert event.payload["funding"] == {"type": "card", "bank": world.issuer.code, "last4": world.card.last4}

    status, first = world.api.get(f"agreements/{agreement.public_id}")
    assert status == 200, first
    token = first["token"]
    assert token.startswith("agt_")
    assert first["token_hint"] == agreement.token_hint == f"{token[:4]}…{token[-4:]}"
    assert (first["object"], first["status"], first["limits"]) == (
        "agreement",
        "active",
        {"per_payment": 20_000, "per_month": 100_000},
    )
    assert token not in json.dumps(event.payload)
    assert AgreementRequest.objects.get(public_id=request_id).token_encrypted == ""
    status, second = world.api.get(f"agreements/{agreement.public_id}")
    assert (status, second["token"]) == (200, None)
    assert {**second, "token": token} == first

    status, payment = _pay(world.api, {"type": "agreement", "token": token})
    assert (status, payment["status"]) == (201, "succeeded"), payment
    assert PaymentIntent.objects.get(public_id=payment["id"]).agreement == agreement

    # Revoking in the portal tells the merchant, and the token no longer pays.
    revoked = portal.post(f"/portal/pay/agreements/{agreement.public_id}/revoke/")
    assert revoked.status_code == 302
    [event] = Event.objects.filter(merchant=world.merchant, type="agreement.revoked")
    assert (event.payload["id"], event.payload["status"], event.livemode) == (agreement.public_id, "revoked", False)
    status, refused = _pay(world.api, {"type": "agreement", "token": token})
    assert (status, refused["error"]["code"]) == (422, "agreement_revoked")
    assert world.api.get(f"agreements/{agreement.public_id}")[1]["status"] == "revoked"


def test_a_wallet_grant_pays_by_balance(world: World, wallet: Any) -> None:
    request_id = _create(world.api)[1]["id"]
    portal = _portal(world)
    assert f'value="account:{wallet.pk}"' in portal.get(_page(request_id)).content.decode()
    granted = portal.post(_page(request_id), {"source": f"account:{wallet.pk}", "decision": "grant"})
    assert granted.status_code == 302
    assert parse_qs(urlsplit(granted["Location"]).query)["status"] == ["granted"]
    agreement_id = world.api.get(f"agreement-requests/{request_id}")[1]["agreement"]
    status, agreement = world.api.get(f"agreements/{agreement_id}")
    assert agreement["funding"] == {"type": "balance", "bank": wallet.bank.code, "last4": wallet.masked_number[-4:]}
    status, payment = _pay(world.api, {"type": "balance", "token": agreement["token"]})
    assert (status, payment["status"], payment["payment_method"]["type"]) == (201, "succeeded", "balance"), payment
    assert PaymentIntent.objects.get(public_id=payment["id"]).linked_account == wallet


def test_a_decline_goes_back_and_grants_nothing(world: World) -> None:
    request_id = _create(world.api, return_url="http://localhost:8080/back")[1]["id"]
    portal = _portal(world)
    declined = portal.post(_page(request_id), {"decision": "decline"})
    assert declined.status_code == 302
    assert declined["Location"] == f"http://localhost:8080/back?agreement_request={request_id}&status=declined"
    assert world.api.get(f"agreement-requests/{request_id}")[1]["status"] == "declined"
    assert not Agreement.objects.exists()
    assert not _granted_events(world)
    # An answered request is a page that says so: no second answer, no redirect.
    again = portal.post(_page(request_id), {"source": f"card:{world.card.pk}", "decision": "grant"})
    assert again.status_code == 409
    assert shown("This agreement request has already been answered.") in again.content.decode()
    assert not Agreement.objects.exists()
    assert portal.get(_page("agrq_nothing")).status_code == 404


def test_an_expired_request_cannot_be_granted(world: World) -> None:
    request_id = _create(world.api)[1]["id"]
    AgreementRequest.objects.filter(public_id=request_id).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert world.api.get(f"agreement-requests/{request_id}")[1]["status"] == "expired"
    portal = _portal(world)
    page = portal.get(_page(request_id))
    assert page.status_code == 410
    assert shown("This agreement request has expired. Ask the merchant for a new one.") in page.content.decode()
    posted = portal.post(_page(request_id), {"source": f"card:{world.card.pk}", "decision": "grant"})
    assert posted.status_code == 410
    assert not Agreement.objects.exists()
    assert not _granted_events(world)
    with pytest.raises(Exception, match="expired") as raised:
        agreement_request_grant(cardholder=world.card.cardholder, request_id=request_id, card=world.card)
    assert getattr(raised.value, "code", None) == "agreement_request_expired"
    assert AgreementRequest.objects.get(public_id=request_id).status == "expired"  # written when acted on
    assert not Agreement.objects.exists()


def test_only_the_merchant_and_mode_that_asked_see_it(world: World, other: World) -> None:
    request_id = _create(world.api)[1]["id"]
    agreement_request_grant(cardholder=world.card.cardholder, request_id=request_id, card=world.card)
    agreement_id = AgreementRequest.objects.get(public_id=request_id).agreement.public_id  # type: ignore[union-attr]
    for api in (other.api, new_api(world.merchant, mode="live")):
        for path in (f"agreement-requests/{request_id}", f"agreements/{agreement_id}"):
            status, body = api.get(path)
            assert (status, body["error"]["code"]) == (404, "resource_missing"), path
    # Those refusals did not spend the token; a read-only key of the right mode may collect it.
    reader = new_api(world.merchant, scope="read")
    assert reader.get(f"agreement-requests/{request_id}")[0] == 200
    assert reader.get(f"agreements/{agreement_id}")[1]["token"].startswith("agt_")
    status, body = _create(reader)
    assert status == 403, body
    assert AgreementRequest.objects.count() == 1


@pytest.mark.parametrize(
    ("overrides", "status", "param"),
    [
        ({"return_url": "javascript:alert(1)"}, 422, "return_url"),
        ({"return_url": "/relative/path"}, 422, "return_url"),
        ({"return_url": "ftp://shop.example/x"}, 422, "return_url"),
        ({"limits": {"per_payment": 50_000, "per_month": 10_000}}, 422, "limits.per_month"),
        ({"limits": {"per_payment": 0, "per_month": 10_000}}, 400, "limits.per_payment"),
        ({"limits": {"per_payment": 100, "per_month": 1000, "per_year": 5}}, 400, "limits.per_year"),
        ({"currency": "XXX"}, 422, None),
        ({"purpose": "x" * 201}, 400, "purpose"),
        ({"purpose": "   "}, 400, "purpose"),
        ({"token": "agt_mine"}, 400, "token"),
    ],
)
def test_bad_input_writes_nothing(world: World, overrides: dict[str, Any], status: int, param: str | None) -> None:
    answer, body = _create(world.api, **overrides)
    assert answer == status, body
    assert set(body) == {"error"}
    if param is not None:
        assert body["error"]["param"] == param
    assert not AgreementRequest.objects.exists()
    assert not AuditLog.objects.filter(action="agreement_request.create").exists()


def test_a_replayed_create_answers_the_stored_request(world: World) -> None:
    body = {"limits": {"per_payment": 100, "per_month": 1000}, "purpose": "Top-ups", "return_url": RETURN_URL}
    first = world.api.raw("post", "agreement-requests", data=body, format="json", HTTP_IDEMPOTENCY_KEY="same")
    again = world.api.raw("post", "agreement-requests", data=body, format="json", HTTP_IDEMPOTENCY_KEY="same")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert AgreementRequest.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_racing_reads_collect_the_token_once(world: World) -> None:
    request_id = _create(world.api)[1]["id"]
    agreement_request_grant(cardholder=world.card.cardholder, request_id=request_id, card=world.card)
    agreement_id = AgreementRequest.objects.get(public_id=request_id).agreement.public_id  # type: ignore[union-attr]

    def read(_: int) -> Any:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {world.api.raw_key}")
        response = client.get(f"/api/v1/agreements/{agreement_id}")
        assert response.status_code == 200
        return response.json()["token"]

    tokens = run_parallel(6, read)
    assert not [t for t in tokens if isinstance(t, BaseException)], tokens
    collected = [t for t in tokens if t is not None]
    assert len(collected) == 1
    assert collected[0].startswith("agt_")
    assert AuditLog.objects.filter(action="agreement.token_collect").count() == 1
