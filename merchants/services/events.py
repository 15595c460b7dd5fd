"""Events: the outbox. A service writes the events of what it changes in the transaction that changes it, with one
delivery per subscribed endpoint; the deliveries are sent once that transaction commits (`deliveries`)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from core.enqueue import enqueue_on_commit

from ..models import Event, Merchant, WebhookDelivery, WebhookEndpoint
from .common import new_public_id

EVENT_TYPES = (
    "payment.created",
    "payment.requires_capture",
    "payment.succeeded",
    "payment.failed",
    "payment.processing",
    "payment.canceled",
    "payment.review_closed",
    "refund.succeeded",
    "refund.failed",
    "refund.pending",
    "agreement.granted",
    "agreement.revoked",
    "voucher.redeemed",
    "settlement.paid",
    "settlement.returned",
    "dispute.created",
    "dispute.updated",
    "dispute.closed",
)


def event_emit(*, merchant: Merchant, type: str, payload: dict[str, Any], livemode: bool = True) -> Event:
    """Appends one event (see `events_emit`)."""
    return events_emit(merchant=merchant, events=[(type, payload)], livemode=livemode)[0]


def events_emit(*, merchant: Merchant, events: list[tuple[str, dict[str, Any]]], livemode: bool = True) -> list[Event]:
    """Appends events in order, with a delivery per subscribed endpoint for each: the outbox. Called by the service
    that changes what the events describe, in the transaction that changes it, so the events are written if and only
    if the change is; their deliveries are queued once that transaction commits (`webhook_deliver`), and the
    `webhooks_retry` job sends any a lost queue message left behind.

    The events are of one mode (their object's); only the merchant's enabled endpoints of that mode that take the
    event's type (an empty list of types takes every type) receive them."""
    for type, _payload in events:
        if type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {type!r}")
    if not events:
        return []
    now = timezone.now()
    rows = [
        Event(
            public_id=new_public_id("evt", at=now),
            merchant=merchant,
            type=type,
            payload=payload,
            object_id=str(payload.get("id", ""))[:64],
            livemode=livemode,
            created_at=now,
        )
        for type, payload in events
    ]
    endpoints = WebhookEndpoint.objects.filter(merchant=merchant, livemode=livemode, enabled=True)
    subscribed = list(endpoints.values_list("pk", "event_types"))
    with transaction.atomic(savepoint=False):  # the caller's transaction, or one of its own
        Event.objects.bulk_create(rows)
        deliveries = WebhookDelivery.objects.bulk_create(
            WebhookDelivery(
                event=event, event_created_at=event.created_at, endpoint_id=endpoint_id, next_attempt_at=now
            )
            for event in rows
            for endpoint_id, types in subscribed
            if not types or event.type in types
        )
    if deliveries:
        from ..tasks import webhook_deliver

        calls = [(delivery.pk, delivery.event_created_at.isoformat()) for delivery in deliveries]
        enqueue_on_commit(webhook_deliver, *calls, otherwise="webhooks_retry sends it")
    return rows


def event_body(event: Event) -> dict[str, Any]:
    return {
        "id": event.public_id,
        "object": "event",
        "type": event.type,
        "livemode": event.livemode,
        "created": int(event.created_at.timestamp()),
        "data": {"object": event.payload},
    }
