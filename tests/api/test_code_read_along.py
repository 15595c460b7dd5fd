"""A payment by code over the API, in its fewest statements: the code read by the statement that takes the
idempotency key, the capture written by the statement that stores the events and the response (PostgreSQL, outside a
transaction, as the API runs) — and every outcome of the key stays what it was: replay, reuse with another body, a
code refused, an earn the statement cannot post, a payment moved on by another request."""

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


# --- the capture written with the outcome (`core.idempotency.ride_late`) --------------------------------------------


def test_a_first_earn_the_statement_cannot_post_takes_the_transactional_path_and_the_rest_still_rides(
    world: World,
) -> None:
    """The cardholder's first points: the ledger's function cannot post them in the statement, so the statement
    writes nothing; the capture is made in a transaction, then the events and the outcome are written."""
    from core.models import IdempotencyRecord
    from merchants.models import Event
    from rewards.models import LedgerTransaction

    api = new_api(world.merchant, mode="live")
    code = methods.payment_code_generate(cardholder=world.card.cardholder, card=world.card).code
    assert not LedgerTransaction.objects.exists()
    status, paid = api.post("payments", body(code), key="first-earn")
    assert (status, paid["status"]) == (201, "succeeded")
    assert paid["points_earned"] > 0
    intent = PaymentIntent.objects.get(public_id=paid["id"])
    assert (intent.status, intent.points_earned, intent.fee is not None) == ("succeeded", paid["points_earned"], True)
    assert LedgerTransaction.objects.filter(idempotency_key__contains=intent.public_id).count() == 1
    assert list(intent.attempts.values_list("status", flat=True)) == ["captured"]
    assert sorted(Event.objects.filter(object_id=intent.public_id).values_list("type", flat=True)) == [
        "payment.created",
        "payment.succeeded",
    ]
    record = IdempotencyRecord.objects.get(key="first-earn")
    assert (record.state, record.response) == ("done", {"status": 201, "body": paid})

    # The next payment's earn is plain: one statement for all of it, the same rows.
    code = methods.payment_code_generate(cardholder=world.card.cardholder, card=world.card).code
    status, second = api.post("payments", body(code, amount=4400), key="second-earn")
    assert (status, second["status"]) == (201, "succeeded")
    assert LedgerTransaction.objects.filter(idempotency_key__contains=second["id"]).count() == 1
    assert Event.objects.filter(object_id=second["id"]).count() == 2


def test_a_payment_moved_on_by_another_request_before_its_capture_is_written_ends_in_a_conflict(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the channel's approval and the statement writing the capture, something else moves the payment (a
    resolving job, say): the statement writes nothing, the transactional path finds the payment gone from processing,
    and the request ends with a conflict, stored as the key's outcome — no second capture, no events of a capture."""
    from merchants.models import Event
    from payments import services

    api = new_api(world.merchant, mode="live")
    warm = methods.payment_code_generate(cardholder=world.card.cardholder, card=world.card).code
    assert api.post("payments", body(warm), key="warm")[0] == 201  # the wallet exists: the earn is plain
    original = services._call_authorize

    def approved_then_moved(intent: PaymentIntent, attempt: Any) -> Any:
        response = original(intent, attempt)
        PaymentIntent.objects.filter(pk=intent.pk).update(status="canceled", failure_code="moved_elsewhere")
        return response

    monkeypatch.setattr(services, "_call_authorize", approved_then_moved)
    code = methods.payment_code_generate(cardholder=world.card.cardholder, card=world.card).code
    status, error = api.post("payments", body(code), key="moved")
    assert (status, error["error"]["code"]) == (409, "payment_unexpected_state")
    intent = PaymentIntent.objects.get(payment_code__code=code)
    assert (intent.status, intent.points_earned, intent.amount_captured) == ("canceled", 0, 0)
    assert list(intent.attempts.values_list("status", flat=True)) == ["captured"]  # what the channel said, kept
    assert not Event.objects.filter(object_id=intent.public_id, type="payment.succeeded").exists()
    assert api.post("payments", body(code), key="moved") == (status, error)  # the outcome replayed
