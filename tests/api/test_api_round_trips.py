"""The merchant API's hot path in round trips, pinned: a regression that adds a query per payment fails here."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from payments import methods
from tests.api.conftest import World, new_api
from tests.statements import as_written

# Transactional, as in production: no test-wide transaction turning commits into savepoints.
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_a_payment_by_code_with_an_endpoint_subscribed_is_four_statements(
    world: World, settings: Any, monkeypatch: Any
) -> None:
    from merchants.services import webhook_endpoint_create
    from merchants.tasks import webhook_deliver

    queued: list[int] = []
    monkeypatch.setattr(webhook_deliver, "delay", queued.append)  # the webhook worker's queue, not run inline here

    settings.POINTS_PROGRAM_CACHE_TTL = 60  # as in production
    api = new_api(world.merchant, mode="live")
    endpoint = webhook_endpoint_create(merchant=world.merchant, url="https://shop.example.com/hooks", event_types=[])

    def pay(key: str, code: str) -> dict[str, Any]:
        body = {
            "amount": 8800,
            "currency": "CNY",
            "confirm": True,
            "payment_method": {"type": "payment_code", "code": code},
        }
        status, payment = api.post("payments", body, key=key)
        assert status == 201, payment
        return payment

    def code() -> str:
        return methods.payment_code_generate(cardholder=world.card.cardholder, card=world.card).code

    pay("warm-up", code())  # prepares the statements and creates the ledger accounts
    shown = code()
    with CaptureQueriesContext(connection) as queries:
        payment = pay("measured", shown)
    assert payment["status"] == "succeeded"
    executed = [as_written(q["sql"]) for q in queries.captured_queries]
    # key · idempotency record, with the code and its card read by the same statement · start (the payment row,
    # taking the code, the decision, the first attempt) · the capture (the attempt's outcome, the payment's move, the
    # points it earns) with the events and their deliveries and the request's stored outcome, all in one statement
    # that writes nothing unless the payment moved. No transaction to open or commit.
    assert [sql.split()[0] for sql in executed] == [
        "SELECT", "WITH", "WITH", "WITH",
    ], "\n".join(" ".join(s.split()[:4]) for s in executed)  # fmt: skip
    assert 'INSERT INTO "core_idempotencyrecord"' in executed[1]
    assert 'FROM "payments_paymentcode"' in executed[1]
    assert "UPDATE payments_paymentcode" in executed[2]
    last = executed[3]
    assert "rewards_post_simple_or_raise" in last
    assert "mengka_require" in last
    assert "merchants_event" in last
    assert "merchants_webhookdelivery" in last
    assert "UPDATE core_idempotencyrecord SET state" in last
    from merchants.models import Event, WebhookDelivery

    event = Event.objects.get(type="payment.succeeded", payload__id=payment["id"])
    delivery = WebhookDelivery.objects.get(event=event, endpoint=endpoint.endpoint)
    assert delivery.pk in queued
