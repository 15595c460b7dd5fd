"""Webhook endpoints, events and signed deliveries against a local HTTP server, with retries and back-off."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.db.models import F
from django.utils import timezone

from core.crypto import decrypt
from merchants import services
from merchants.models import Event, WebhookDelivery, WebhookEndpoint
from merchants.tasks import webhooks_retry
from tests.api.conftest import World, idem, pay_body

pytestmark = pytest.mark.django_db


class Receiver:
    """A merchant's webhook receiver: records each request, answers with the next queued status (then 200)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.server.shutdown()
    server.server.server_close()


def verify(header: str, body: bytes, secret: str, *, tolerance: int = 300) -> dict[str, Any]:
    """What a merchant writes: parse t and v1, recompute the HMAC of "t.body", compare in constant time."""
    parts = dict(item.split("=", 1) for item in header.split(","))
    timestamp = int(parts["t"])
    if abs(time.time() - timestamp) > tolerance:
        raise ValueError("stale")
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, parts["v1"]):
        raise ValueError("bad signature")
    return json.loads(body)


def test_endpoint_crud_and_secret_shown_once(world: World) -> None:
    status, created = world.api.post(
        "webhook-endpoints", {"url": "https://shop.example.com/h", "event_types": ["payment.succeeded"]}, key=idem()
    )
    assert status == 201
    assert created["secret"].startswith("whsec_")
    endpoint = WebhookEndpoint.objects.get()
    assert created["secret"] not in endpoint.secret_encrypted
    assert decrypt(endpoint.secret_encrypted) == created["secret"]
    status, fetched = world.api.get(f"webhook-endpoints/{created['id']}")
    assert status == 200
    assert "secret" not in fetched
    assert fetched["event_types"] == ["payment.succeeded"]
    status, updated = world.api.post(f"webhook-endpoints/{created['id']}", {"enabled": False}, key=idem())
    assert (status, updated["enabled"]) == (200, False)
    _, listed = world.api.get("webhook-endpoints")
    assert [row["id"] for row in listed["data"]] == [created["id"]]
    response = world.api.raw("delete", f"webhook-endpoints/{created['id']}")
    assert (response.status_code, response.json()["deleted"]) == (200, True)
    assert not WebhookEndpoint.objects.exists()


def test_endpoint_input_is_validated(world: World) -> None:
    for body, param in (
        ({"url": "not a url"}, "url"),
        ({"url": "ftp://x.example.com"}, "url"),
        ({"url": "https://x.example.com", "event_types": ["payment.exploded"]}, "event_types"),
        ({"url": "https://x.example.com", "event_types": "payment.succeeded"}, "event_types"),
    ):
        status, error = world.api.post("webhook-endpoints", body, key=idem())
        assert status == 400, body
        assert error["error"]["param"].startswith(param)
    assert not WebhookEndpoint.objects.exists()


def test_payment_events_are_delivered_signed(
    world: World, receiver: Receiver, django_capture_on_commit_callbacks: Any
) -> None:
    created = services.webhook_endpoint_create(
        merchant=world.merchant,
        url=receiver.url,
        event_types=["payment.succeeded", "refund.succeeded"],
        livemode=False,  # the mode of world's key
    )
    with django_capture_on_commit_callbacks(execute=True):
        status, payment = world.api.post("payments", pay_body(world.card, 8800), key=idem())
    assert status == 201
    assert len(receiver.requests) == 1  # payment.created is not subscribed
    request = receiver.requests[0]
    event = verify(request["headers"]["Mengka-Signature"], request["body"], created.secret)
    assert event["type"] == "payment.succeeded"
    assert event["data"]["object"]["id"] == payment["id"]
    assert event["data"]["object"]["amount_captured"] == 8800
    with pytest.raises(ValueError, match="bad signature"):
        verify(request["headers"]["Mengka-Signature"], request["body"] + b" ", created.secret)
    with pytest.raises(ValueError, match="bad signature"):
        verify(request["headers"]["Mengka-Signature"], request["body"], "whsec_other")
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("succeeded", 1, 200)


def test_failed_deliveries_are_retried_with_back_off(world: World, receiver: Receiver) -> None:
    services.webhook_endpoint_create(merchant=world.merchant, url=receiver.url, event_types=[])
    receiver.statuses = [500, 503]
    event = services.event_emit(merchant=world.merchant, type="payment.created", payload={"id": "pay_x"})
    delivery = WebhookDelivery.objects.get(event=event)
    before = timezone.now()
    delivery = services.webhook_deliver(delivery_id=delivery.pk)
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("pending", 1, 500)
    assert delivery.next_attempt_at is not None
    assert dt.timedelta(seconds=59) < delivery.next_attempt_at - before <= dt.timedelta(seconds=61)
    assert webhooks_retry() == 0  # not due yet
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    assert webhooks_retry() == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("pending", 2, 503)
    assert dt.timedelta(minutes=4) < delivery.next_attempt_at - timezone.now() <= dt.timedelta(minutes=5)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    webhooks_retry()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("succeeded", 3, 200)
    assert len(receiver.requests) == 3
    assert len({request["headers"]["Mengka-Signature"] for request in receiver.requests}) >= 1
    assert {json.loads(request["body"])["id"] for request in receiver.requests} == {event.public_id}


def test_gives_up_after_more_than_a_day(world: World) -> None:
    assert sum(services.RETRY_DELAYS, dt.timedelta()) > dt.timedelta(hours=24)
    services.webhook_endpoint_create(merchant=world.merchant, url="http://127.0.0.1:9/closed", event_types=[])
    event = services.event_emit(merchant=world.merchant, type="payment.created", payload={})
    delivery = WebhookDelivery.objects.get(event=event)
    for attempt in range(1, services.MAX_ATTEMPTS + 1):
        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        delivery = services.webhook_deliver(delivery_id=delivery.pk)
        assert delivery.attempts == attempt
        assert delivery.last_error
    assert (delivery.status, delivery.next_attempt_at) == ("failed", None)
    assert services.webhook_deliver(delivery_id=delivery.pk).attempts == services.MAX_ATTEMPTS  # nothing more


def test_resend_queues_again(world: World, receiver: Receiver, django_capture_on_commit_callbacks: Any) -> None:
    services.webhook_endpoint_create(merchant=world.merchant, url=receiver.url, event_types=[])
    receiver.statuses = [500] * services.MAX_ATTEMPTS
    event = services.event_emit(merchant=world.merchant, type="payment.created", payload={})
    delivery = WebhookDelivery.objects.get(event=event)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="failed", attempts=services.MAX_ATTEMPTS)
    receiver.statuses = []
    with django_capture_on_commit_callbacks(execute=True):
        services.webhook_delivery_resend(delivery=delivery)
    delivery.refresh_from_db()
    assert delivery.status == "succeeded"
    assert len(receiver.requests) == 1


def test_disabled_and_unsubscribed_endpoints_get_nothing(world: World) -> None:
    disabled = services.webhook_endpoint_create(merchant=world.merchant, url="https://a.example.com", event_types=[])
    services.webhook_endpoint_update(endpoint=disabled.endpoint, enabled=False)
    services.webhook_endpoint_create(
        merchant=world.merchant, url="https://b.example.com", event_types=["refund.succeeded"]
    )
    event = services.event_emit(merchant=world.merchant, type="payment.created", payload={})
    assert not WebhookDelivery.objects.filter(event=event).exists()
    assert Event.objects.filter(merchant=world.merchant).count() == 1


def test_events_get_one_delivery_per_subscribed_endpoint_of_their_mode(
    world: World, django_capture_on_commit_callbacks: Any, monkeypatch: Any
) -> None:
    from merchants.tasks import webhook_deliver
    from tests.factories import MerchantFactory

    every = services.webhook_endpoint_create(
        merchant=world.merchant, url="https://a.example.com", event_types=[], livemode=False
    )
    refunds = services.webhook_endpoint_create(
        merchant=world.merchant, url="https://b.example.com", event_types=["refund.succeeded"], livemode=False
    )
    live = services.webhook_endpoint_create(
        merchant=world.merchant, url="https://c.example.com", event_types=[], livemode=True
    )
    services.webhook_endpoint_create(merchant=MerchantFactory(), url="https://d.example.com", event_types=[])
    queued: list[tuple[int, str]] = []
    monkeypatch.setattr(webhook_deliver, "delay", lambda *args: queued.append(args))  # the webhook worker's queue
    with django_capture_on_commit_callbacks(execute=True):
        emitted = services.events_emit(
            merchant=world.merchant,
            events=[("payment.succeeded", {"n": 1}), ("refund.succeeded", {"n": 2}), ("payment.failed", {"n": 3})],
            livemode=True,
        )
        test_mode = services.events_emit(
            merchant=world.merchant, events=[("refund.succeeded", {"n": 4})], livemode=False
        )
    assert [event.type for event in emitted] == ["payment.succeeded", "refund.succeeded", "payment.failed"]
    assert [event.pk for event in emitted] == sorted(event.pk for event in emitted)  # ids in the order given
    stored = {event.pk: (event.type, event.payload, event.livemode) for event in Event.objects.all()}
    assert [stored[event.pk] for event in emitted] == [
        ("payment.succeeded", {"n": 1}, True),
        ("refund.succeeded", {"n": 2}, True),
        ("payment.failed", {"n": 3}, True),
    ]
    pairs = sorted(WebhookDelivery.objects.values_list("event_id", "endpoint_id"))
    # Live events reach only the live endpoint (every type); the test-mode refund reaches both test endpoints.
    expected = [(event.pk, live.endpoint.pk) for event in emitted]
    expected += [(test_mode[0].pk, every.endpoint.pk), (test_mode[0].pk, refunds.endpoint.pk)]
    assert pairs == sorted(expected)
    # Each queued once, with its month: the event's time, which every delivery of the event carries.
    assert sorted(queued) == sorted(
        (pk, when.isoformat()) for pk, when in WebhookDelivery.objects.values_list("pk", "event__created_at")
    )
    assert not WebhookDelivery.objects.exclude(event_created_at=F("event__created_at")).exists()
    delivery = WebhookDelivery.objects.first()
    assert delivery is not None
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at is not None) == ("pending", 0, True)
    assert services.events_emit(merchant=world.merchant, events=[]) == []
    with pytest.raises(ValueError, match="unknown event type"):
        services.events_emit(merchant=world.merchant, events=[("payment.exploded", {})])


def test_admin_resend_action(world: World, receiver: Receiver, client: Any) -> None:
    from tests.factories import AllianceOperatorFactory

    services.webhook_endpoint_create(merchant=world.merchant, url=receiver.url, event_types=[])
    event = services.event_emit(merchant=world.merchant, type="payment.created", payload={})
    delivery = WebhookDelivery.objects.get(event=event)
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status="failed")
    client.force_login(AllianceOperatorFactory())
    response = client.post(
        "/admin/merchants/webhookdelivery/", {"action": "resend", "_selected_action": [delivery.pk]}, follow=True
    )
    assert response.status_code == 200
    delivery.refresh_from_db()
    assert delivery.status in ("pending", "succeeded")  # queued; sent once the admin's transaction commits


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/h", "http://10.1.2.3/h", "http://169.254.169.254/latest"])
def test_private_addresses_are_not_called(world: World, settings: Any, url: str) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = False
    services.webhook_endpoint_create(merchant=world.merchant, url=url, event_types=[])
    event = services.event_emit(merchant=world.merchant, type="payment.created", payload={})
    delivery = services.webhook_deliver(delivery_id=WebhookDelivery.objects.get(event=event).pk)
    assert (delivery.attempts, delivery.response_code) == (1, None)
    assert delivery.last_error.startswith("BlockedHost")


def test_changes_made_by_jobs_reach_the_merchant_once_through_the_outbox(world: World) -> None:
    """The jobs change payments and refunds through the same services as the API, which write each change's event
    with it: an expired authorisation and a refund settled by the resolver are told once, nothing is told twice."""
    from payments import services as payment_services
    from payments.models import PaymentIntent, Refund

    _, held = world.api.post("payments", pay_body(world.card, 3000, capture_method="manual"), key=idem())
    _, paid = world.api.post("payments", pay_body(world.card, 2000), key=idem())
    told = list(Event.objects.filter(merchant=world.merchant).order_by("pk").values_list("type", "object_id"))
    assert told == [
        ("payment.created", held["id"]),
        ("payment.requires_capture", held["id"]),
        ("payment.created", paid["id"]),
        ("payment.succeeded", paid["id"]),
    ]
    PaymentIntent.objects.filter(public_id=held["id"]).update(
        authorization_expires_at=timezone.now() - dt.timedelta(minutes=1)
    )
    assert payment_services.authorizations_expire() == 1
    assert payment_services.authorizations_expire() == 0
    intent = PaymentIntent.objects.get(public_id=paid["id"])
    PaymentIntent.objects.filter(pk=intent.pk).update(amount_refund_reserved=100)
    stuck = Refund.objects.create(
        intent=intent,
        intent_created_at=intent.created_at,
        merchant_id=intent.merchant_id,
        amount=100,
        reference=f"{intent.public_id}-r1",
    )  # never sent
    payment_services.attempts_resolve(older_than=dt.timedelta(0))
    payment_services.attempts_resolve(older_than=dt.timedelta(0))
    canceled = Event.objects.get(merchant=world.merchant, type="payment.canceled")
    assert canceled.payload["id"] == held["id"]
    refunded = Event.objects.get(merchant=world.merchant, type="refund.succeeded")
    assert (refunded.payload["id"], refunded.payload["amount"]) == (stuck.public_id, 100)
    assert Event.objects.filter(merchant=world.merchant).count() == len(told) + 2


def test_a_change_that_rolls_back_leaves_no_event(world: World, monkeypatch: Any) -> None:
    """The event is written in the change's transaction: a capture whose ledger posting fails leaves the payment
    processing (for the resolver) and tells the merchant nothing."""
    from payments import ledger_bridge
    from payments.models import PaymentIntent

    def ledger_down(**kwargs: Any) -> None:
        raise RuntimeError("ledger down")

    monkeypatch.setattr(ledger_bridge, "spend_post", ledger_down)
    world.api.client.raise_request_exception = False
    status, _ = world.api.post("payments", pay_body(world.card, 2500), key="rolls-back")
    assert status == 500
    intent = PaymentIntent.objects.get()
    assert intent.status == "processing"
    assert list(Event.objects.filter(object_id=intent.public_id).values_list("type", flat=True)) == ["payment.created"]
