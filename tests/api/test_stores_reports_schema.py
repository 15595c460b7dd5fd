"""Stores, the summary report (with small-cohort suppression), the OpenAPI schema and docs, the keys' admin."""

from __future__ import annotations

import datetime as dt
import io
import warnings
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from core.models import AuditLog
from merchants.models import ApiKey, Store
from merchants.services import api_key_create
from payments.api_support import MIN_COHORT
from payments.models import PaymentIntent
from tests.api.conftest import World, idem
from tests.factories import CardFactory, CardholderFactory, CardProductFactory
from tests.i18n import shown

pytestmark = pytest.mark.django_db


def test_stores(world: World, other: World) -> None:
    status, store = world.api.post("stores", {"code": "SH-1", "name": "Nanjing Road", "city": "Shanghai"}, key=idem())
    assert status == 201
    assert store == {
        "id": "SH-1",
        "object": "store",
        "code": "SH-1",
        "name": "Nanjing Road",
        "city": "Shanghai",
        "livemode": False,
        "created": store["created"],
    }
    status, error = world.api.post("stores", {"code": "SH-1", "name": "Again"}, key=idem())
    assert (status, error["error"]["code"], error["error"]["param"]) == (409, "store_exists", "code")
    assert other.api.post("stores", {"code": "SH-1", "name": "Theirs"}, key=idem())[0] == 201
    status, error = world.api.post("stores", {"code": "bad code!", "name": "x"}, key=idem())
    assert (status, error["error"]["param"]) == (400, "code")
    _, listed = world.api.get("stores")
    assert [row["name"] for row in listed["data"]] == ["Nanjing Road"]
    assert Store.objects.count() == 2
    assert AuditLog.objects.filter(action="store.create").count() == 2


def _captured(
    world: World, cardholder: Any, amount: int, when: dt.datetime, refunded: int = 0, livemode: bool = False
) -> None:
    """A captured payment; in test mode by default, the mode of `world.api`'s key."""
    card = CardFactory(cardholder=cardholder, product=CardProductFactory(bank=world.issuer))
    PaymentIntent.objects.create(
        merchant=world.merchant, cardholder=cardholder, card=card, issuer=world.issuer, amount=amount,
        amount_captured=amount, amount_refunded=refunded, amount_refund_reserved=refunded, status="succeeded",
        captured_at=when, created_at=when, livemode=livemode,
    )  # fmt: skip


def test_summary_report_suppresses_small_cohorts(world: World) -> None:
    today = timezone.localtime().replace(hour=12, minute=0, second=0, microsecond=0)
    yesterday = today - dt.timedelta(days=1)
    regulars = [CardholderFactory() for _ in range(MIN_COHORT)]
    for index, cardholder in enumerate(regulars):
        _captured(world, cardholder, 1000, today)
        if index < 5:
            _captured(world, cardholder, 3000, today, refunded=1000)
    _captured(world, regulars[0], 500, yesterday)
    status, report = world.api.get(
        "reports/summary",
        {"date_from": (yesterday.date()).isoformat(), "date_to": today.date().isoformat()},
    )
    assert status == 200
    assert report["total"] == {
        "count": 26,
        "volume": 20 * 1000 + 5 * 2000 + 500,
        "average_ticket": (20 * 1000 + 5 * 2000 + 500) // 26,
        "suppressed": False,
        "cardholders": 20,
        "alliance_card_share": 1.0,
        "repeat_rate": round(5 / 20, 4),
    }
    day_before, day = report["by_day"]
    assert day_before == {
        "date": yesterday.date().isoformat(),
        "count": 1,
        "volume": 500,
        "average_ticket": 500,
        "suppressed": True,
        "cardholders": None,
        "alliance_card_share": None,
        "repeat_rate": None,
    }
    assert (day["count"], day["suppressed"], day["repeat_rate"]) == (25, False, 0.25)
    status, error = world.api.get("reports/summary", {"date_from": "2026-02-01", "date_to": "2026-01-01"})
    assert (status, error["error"]["param"]) == (400, "date_from")
    status, error = world.api.get("reports/summary", {"date_from": "yesterday"})
    assert (status, error["error"]["param"]) == (400, "date_from")
    for edge in ({"date_to": "0001-01-02"}, {"date_from": "9999-12-30", "date_to": "9999-12-31"}):
        status, error = world.api.get("reports/summary", edge)
        assert status == 400, edge


def test_report_is_per_merchant(world: World, other: World) -> None:
    _captured(world, CardholderFactory(), 1000, timezone.now())
    _, report = other.api.get("reports/summary")
    assert report["total"]["count"] == 0
    assert report["by_day"] == []


def test_schema_generates_without_warnings() -> None:
    out = io.StringIO()
    err = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        call_command("spectacular", "--validate", "--fail-on-warn", stdout=out, stderr=err)
    schema = out.getvalue()
    for path in (
        "/api/v1/payments:",
        "/api/v1/payments/{payment_id}/capture:",
        "/api/v1/payments/quote:",
        "/api/v1/refunds/{refund_id}:",
        "/api/v1/reports/summary:",
        "/api/v1/stores:",
        "/api/v1/webhook-endpoints/{endpoint_id}:",
        "/api/v1/events/{event_id}:",
    ):
        assert path in schema
    assert "bearer" in schema
    assert "card_test_00000001" in schema  # the examples are in


def test_schema_and_docs_are_served(client: Any) -> None:
    assert client.get("/api/v1/schema/").status_code == 200
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content


def test_admin_revokes_keys_and_never_shows_the_hash(world: World, client: Any) -> None:
    from tests.factories import AllianceOperatorFactory

    key = api_key_create(merchant=world.merchant).api_key
    client.force_login(AllianceOperatorFactory())
    page = client.get(f"/admin/merchants/apikey/{key.pk}/change/")
    assert page.status_code == 200
    assert key.key_hash.encode() not in page.content
    assert key.prefix.encode() in page.content
    response = client.post("/admin/merchants/apikey/", {"action": "revoke", "_selected_action": [key.pk]}, follow=True)
    assert response.status_code == 200
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    assert AuditLog.objects.filter(action="api_key.revoke").count() == 1


def test_admin_rotates_keys_and_sends_the_new_one_to_the_contact(world: World, client: Any) -> None:
    from merchants.models import MerchantApplication
    from tests.factories import AllianceOperatorFactory, make_application

    key = api_key_create(merchant=world.merchant, mode="live", scope="read").api_key
    client.force_login(AllianceOperatorFactory())
    url = "/admin/merchants/apikey/"
    # No application, no contact to send a key to: refused, nothing rotated.
    response = client.post(url, {"action": "rotate", "_selected_action": [key.pk]}, follow=True)
    refusal = shown("This merchant has no application contact to send a new key to; the alliance issues its keys.")
    assert refusal in response.content.decode()
    assert ApiKey.objects.filter(merchant=world.merchant, mode="live").count() == 1
    application = make_application(contact_email="ops@shop.example")
    MerchantApplication.objects.filter(pk=application.pk).update(merchant=world.merchant, status="approved")
    response = client.post(url, {"action": "rotate", "_selected_action": [key.pk]}, follow=True)
    assert response.status_code == 200
    new = ApiKey.objects.exclude(pk=key.pk).filter(merchant=world.merchant, mode="live").get()
    assert new.scope == "read"
    assert f"{new.prefix}…".encode() in response.content
    assert b"o**@shop.example" in response.content
    assert ApiKey.objects.get(pk=key.pk).expires_at is not None
