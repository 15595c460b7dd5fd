"""The merchant API's hot path in queries, pinned: a regression that adds a query per payment fails here."""

from __future__ import annotations

from typing import Any

import pytest

from payments import methods
from tests.api.conftest import World, new_api

# Transactional, as in production: no test-wide transaction turning commits into savepoints.
pytestmark = [pytest.mark.django_db(transaction=True)]


def test_a_payment_by_code_with_an_endpoint_subscribed_stays_within_its_queries(
    world: World, settings: Any, monkeypatch: Any, django_assert_max_num_queries: Any
) -> None:
    from merchants.services import webhook_endpoint_create
    from merchants.tasks import webhook_deliver

    queued: list[int] = []
    # The webhook worker's queue, not run inline here.
    monkeypatch.setattr(webhook_deliver, "delay", lambda pk, event_created_at: queued.append(pk))

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

    pay("warm-up", code())  # creates the ledger accounts
    shown = code()
    # The API key; the request's key; the service's work as in tests/payments/test_query_counts.py, with the code
    # read and taken and a delivery written with each event; the request's key done; the response's read.
    with django_assert_max_num_queries(API_QUERIES_PER_PAYMENT):
        payment = pay("measured", shown)
    assert payment["status"] == "succeeded"
    from merchants.models import Event, WebhookDelivery

    event = Event.objects.get(type="payment.succeeded", payload__id=payment["id"])
    delivery = WebhookDelivery.objects.get(event=event, endpoint=endpoint.endpoint)
    assert delivery.pk in queued


# The service's statements (tests/payments/test_query_counts.py, the earn's ledger key row and entry count among
# them), with the code read, taken and given its payment (payments are partitioned by month: the code's row holds
# "one payment per code") and a delivery with each event, and the API's own: its key and the request's idempotency
# record.
API_QUERIES_PER_PAYMENT = 36
