"""Idempotency-Key on POSTs: the first status and body are replayed; reuse with another request is a 409."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection

from payments.connectors.inprocess import InProcessConnector
from payments.models import PaymentIntent, Refund
from tests.api.conftest import World, idem, pay_body

pytestmark = pytest.mark.django_db


def test_replay_returns_the_stored_status_and_body(world: World) -> None:
    key = idem()
    status, first = world.api.post("payments", pay_body(world.card, 4200), key=key)
    response = world.api.client.post(
        "/api/v1/payments", pay_body(world.card, 4200), format="json", HTTP_IDEMPOTENCY_KEY=key
    )
    assert (response.status_code, response.json()) == (status, first)
    assert response["Idempotent-Replayed"] == "true"
    assert PaymentIntent.objects.count() == 1
    assert world.fake.charge_count() == 1


def test_one_record_per_request_the_api_s_standing_for_the_service_s(world: World) -> None:
    from core.idempotency import holding, run_idempotent
    from core.models import IdempotencyRecord

    key = idem()
    world.api.post("payments", pay_body(world.card, 4200), key=key)
    assert list(IdempotencyRecord.objects.filter(key=key).values_list("scope", "state")) == [
        (f"api:{world.merchant.pk}:test", "done")  # the world holds a test key
    ]
    # Outside the API's hold, a service call keeps its own record; inside it, only for another key.
    ran: list[str] = []
    with holding("held"):
        run_idempotent(scope="s", key="held", operation="op", request={}, execute=lambda: ran.append("a") or {})
        run_idempotent(scope="s", key="other", operation="op", request={}, execute=lambda: ran.append("b") or {})
    assert ran == ["a", "b"]
    assert list(IdempotencyRecord.objects.filter(scope="s").values_list("key", flat=True)) == ["other"]


def test_replay_of_an_error_is_the_same_error(world: World) -> None:
    _, payment = world.api.post("payments", pay_body(world.card, 1000), key=idem())
    key = idem()
    first = world.api.post("refunds", {"payment": payment["id"], "amount": 5000}, key=key)
    assert first[0] == 422
    assert world.api.post("refunds", {"payment": payment["id"], "amount": 5000}, key=key) == first
    assert not Refund.objects.exists()


def test_same_key_with_another_body_or_path_conflicts(world: World) -> None:
    key = idem()
    world.api.post("payments", pay_body(world.card, 1000), key=key)
    status, error = world.api.post("payments", pay_body(world.card, 1001), key=key)
    assert (status, error["error"]["code"], error["error"]["param"]) == (
        409,
        "idempotency_key_reused",
        "Idempotency-Key",
    )
    status, error = world.api.post("stores", {"code": "S1", "name": "One"}, key=key)
    assert (status, error["error"]["code"]) == (409, "idempotency_key_reused")
    assert PaymentIntent.objects.count() == 1


def test_keys_are_per_merchant(world: World, other: World) -> None:
    key = idem()
    assert world.api.post("payments", pay_body(world.card, 1000), key=key)[0] == 201
    assert other.api.post("payments", pay_body(other.card, 1000), key=key)[0] == 201
    assert PaymentIntent.objects.count() == 2


def test_without_a_key_each_post_runs(world: World) -> None:
    assert world.api.post("payments", pay_body(world.card, 1000))[0] == 201
    assert world.api.post("payments", pay_body(world.card, 1000))[0] == 201
    assert PaymentIntent.objects.count() == 2


def test_validation_errors_do_not_use_up_the_key(world: World) -> None:
    key = idem()
    assert world.api.post("payments", {**pay_body(world.card), "amount": "x"}, key=key)[0] == 400
    assert world.api.post("payments", pay_body(world.card, 1000), key=key)[0] == 201


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_key_run_once(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.api.conftest import Api

    entered, release = threading.Event(), threading.Event()
    original = InProcessConnector.authorize

    def held_authorize(self: InProcessConnector, request: Any) -> Any:
        entered.set()
        release.wait(10)
        return original(self, request)

    monkeypatch.setattr(InProcessConnector, "authorize", held_authorize)
    key, body, raw_key = idem(), pay_body(world.card, 7700), world.api.raw_key
    results: list[tuple[int, Any]] = []
    lock = threading.Lock()

    def call() -> None:
        try:
            outcome = Api(raw_key).post("payments", body, key=key)
            with lock:
                results.append(outcome)
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    assert entered.wait(10)
    deadline = time.monotonic() + 10
    while len(results) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for thread in threads:
        thread.join(10)
    statuses = sorted(status for status, _ in results)
    assert statuses == [201, 409, 409, 409]
    assert {body["error"]["code"] for status, body in results if status == 409} == {"idempotency_in_progress"}
    assert PaymentIntent.objects.count() == 1
    assert world.fake.charge_count() == 1
    winner = next(body for status, body in results if status == 201)
    assert world.api.post("payments", body, key=key) == (201, winner)


@pytest.mark.parametrize("method", ["agreement", "payment_code"])
def test_a_retry_after_an_unexpected_error_past_the_charge_carries_on_with_the_same_payment(
    world: World, monkeypatch: Any, method: str
) -> None:
    """The payment is charged, then the request fails unexpectedly (a 500) while its response is rendered: the same
    key must not charge again, and the merchant is told of the payment once."""
    from core.models import IdempotencyRecord
    from merchants.models import Event
    from payments import apis
    from payments.methods import payment_code_generate
    from tests.api.conftest import agreement_body, new_api

    api = new_api(world.merchant, mode="live")
    if method == "agreement":
        body = agreement_body(world.card, world.merchant, 5000)
    else:
        code = payment_code_generate(cardholder=world.card.cardholder, card=world.card).code
        body = {
            "amount": 5000,
            "currency": "CNY",
            "confirm": True,
            "payment_method": {"type": "payment_code", "code": code},
        }
    render = apis.payment_out

    def lost_connection(intent: Any) -> None:
        raise RuntimeError("connection lost")

    monkeypatch.setattr(apis, "payment_out", lost_connection)
    api.client.raise_request_exception = False
    status, failed = api.post("payments", body, key="till-7-order-1")
    assert (status, failed["error"]["type"]) == (500, "api_error")
    record = IdempotencyRecord.objects.get(key="till-7-order-1")
    assert record.state == "interrupted"
    first = PaymentIntent.objects.get()
    assert record.response == {"payment": first.public_id}  # recorded with the payment's row, before the charge
    monkeypatch.setattr(apis, "payment_out", render)
    status, retried = api.post("payments", body, key="till-7-order-1")
    assert status == 201
    assert retried["id"] == first.public_id
    assert retried["status"] == "succeeded"
    assert PaymentIntent.objects.count() == 1
    assert world.fake.charge_count() == 1
    assert sorted(Event.objects.filter(object_id=first.public_id).values_list("type", flat=True)) == [
        "payment.created",
        "payment.succeeded",
    ]
    status, replayed = api.post("payments", body, key="till-7-order-1")
    assert (status, replayed) == (201, retried)  # done: replayed as any other key
    assert IdempotencyRecord.objects.get(key="till-7-order-1").state == "done"


def test_an_unexpected_error_before_the_charge_then_a_retry_pays_once(world: World, monkeypatch: Any) -> None:
    from core.models import IdempotencyRecord
    from payments import risk

    assess = risk.assess

    def down(intent: Any, **kwargs: Any) -> Any:
        raise RuntimeError("risk service down")

    monkeypatch.setattr(risk, "assess", down)
    world.api.client.raise_request_exception = False
    status, _ = world.api.post("payments", pay_body(world.card, 4200), key="k-free")
    assert status == 500
    assert world.fake.charge_count() == 0
    # The payment was written before the risk check: the retry carries on with it, never makes a second one.
    assert IdempotencyRecord.objects.get(key="k-free").state == "interrupted"
    assert PaymentIntent.objects.get().status == "requires_confirmation"
    monkeypatch.setattr(risk, "assess", assess)
    status, paid = world.api.post("payments", pay_body(world.card, 4200), key="k-free")
    assert (status, paid["status"]) == (201, "succeeded")
    assert PaymentIntent.objects.count() == 1
    assert world.fake.charge_count() == 1


def test_a_retry_after_an_unexpected_error_past_a_refund_never_refunds_twice(world: World, monkeypatch: Any) -> None:
    from payments import apis
    from payments.models import Refund

    _, paid = world.api.post("payments", pay_body(world.card, 8000), key=idem())
    announce = apis.refund_out

    def lost_connection(refund: Any) -> None:
        raise RuntimeError("connection lost")

    monkeypatch.setattr(apis, "refund_out", lost_connection)
    world.api.client.raise_request_exception = False
    body = {"payment": paid["id"], "amount": 3000}
    status, _ = world.api.post("refunds", body, key="refund-once")
    assert status == 500
    refund = Refund.objects.get()
    monkeypatch.setattr(apis, "refund_out", announce)
    status, retried = world.api.post("refunds", body, key="refund-once")
    assert (status, retried["id"], retried["amount"]) == (201, refund.public_id, 3000)
    assert Refund.objects.count() == 1
    assert [call for call in world.fake.calls if call[0] == "refund"] == [("refund", refund.reference)]
    assert PaymentIntent.objects.get(public_id=paid["id"]).amount_refund_reserved == 3000


def test_a_refund_written_but_never_sent_is_sent_by_the_resolve_job(world: World) -> None:
    from datetime import timedelta

    from payments import services
    from payments.models import Refund

    _, paid = world.api.post("payments", pay_body(world.card, 8000), key=idem())
    intent = PaymentIntent.objects.get(public_id=paid["id"])
    PaymentIntent.objects.filter(pk=intent.pk).update(amount_refund_reserved=2000)
    stuck = Refund.objects.create(
        intent=intent,
        intent_created_at=intent.created_at,
        merchant_id=intent.merchant_id,
        amount=2000,
        reference=f"{intent.public_id}-r1",
    )  # the process died
    services.attempts_resolve(older_than=timedelta(0))
    stuck.refresh_from_db()
    assert stuck.status == "succeeded"
    assert [call for call in world.fake.calls if call[0] == "refund"] == [("refund", stuck.reference)]
