"""A payment by code: the code is read by the statement that takes the idempotency key (PostgreSQL, outside a
transaction, as the API runs), and every outcome of the key stays what it was — replay, reuse with another body,
a code refused."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from payments import methods
from payments.models import PaymentIntent
from tests.api.conftest import World, new_api

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def body(code: str, amount: int = 3300) -> dict[str, Any]:
    return {
        "amount": amount,
        "currency": "CNY",
        "confirm": True,
        "payment_method": {"type": "payment_code", "code": code},
    }


def test_the_code_read_with_the_key_pays_replays_and_conflicts_as_before(world: World) -> None:
    api = new_api(world.merchant, mode="live")
    code = methods.payment_code_generate(cardholder=world.card.cardholder, card=world.card).code
    with CaptureQueriesContext(connection) as queries:
        status, paid = api.post("payments", body(code), key="by-code-1")
    assert (status, paid["status"]) == (201, "succeeded")
    reads = [q["sql"] for q in queries.captured_queries if 'FROM "payments_paymentcode"' in q["sql"]]
    assert len(reads) == 1
    assert 'INSERT INTO "core_idempotencyrecord"' in reads[0]  # the code read by the key's statement, once

    response = api.client.post("/api/v1/payments", body(code), format="json", HTTP_IDEMPOTENCY_KEY="by-code-1")
    assert (response.status_code, response.json()) == (201, paid)
    assert response["Idempotent-Replayed"] == "true"
    status, error = api.post("payments", body(code, amount=3301), key="by-code-1")
    assert (status, error["error"]["code"]) == (409, "idempotency_key_reused")
    assert PaymentIntent.objects.filter(payment_code__code=code).count() == 1

    # The code is used now: a new key reads it with its statement and is refused, the key's outcome that refusal.
    status, refused = api.post("payments", body(code), key="by-code-2")
    assert (status, refused["error"]["code"]) == (409, "payment_code_used")
    assert api.post("payments", body(code), key="by-code-2") == (status, refused)


def test_an_unknown_code_read_with_the_key_is_refused_without_a_second_read(world: World) -> None:
    api = new_api(world.merchant, mode="live")
    with CaptureQueriesContext(connection) as queries:
        status, error = api.post("payments", body("1" * 18), key="unknown-code")
    assert (status, error["error"]["param"]) == (404, "payment_code")
    assert len([q for q in queries.captured_queries if 'FROM "payments_paymentcode"' in q["sql"]]) == 1
    assert not PaymentIntent.objects.exists()
