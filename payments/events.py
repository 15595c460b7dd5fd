"""Events about payments and refunds for the merchant's webhooks, emitted by the API after each state change."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Case, CharField, Exists, OuterRef, Q, QuerySet, Value, When
from django.utils import timezone

from merchants.models import Event
from merchants.services import event_emit, events_emit

from .models import PaymentIntent, Refund


def unix(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment else None


# --- what a merchant sees of a payment and a refund (the API's bodies and the events' objects) ----------------------


def payment_out(intent: PaymentIntent) -> dict[str, Any]:
    card = intent.card
    return {
        "id": intent.public_id,
        "object": "payment",
        "amount": intent.amount,
        "currency": intent.currency,
        "status": intent.status,
        "capture_method": intent.capture_method,
        "amount_capturable": intent.amount_capturable,
        "amount_captured": intent.amount_captured,
        "amount_refunded": intent.amount_refunded,
        "payment_method": {
            "type": intent.method,
            "card": {"bank": card.bank.code, "last4": card.last4} if card else None,
        },
        "description": intent.description,
        "merchant_reference": intent.merchant_reference,
        "metadata": intent.metadata,
        "failure_code": intent.failure_code or None,
        "failure_message": intent.failure_message or None,
        "points_earned": intent.points_earned,
        "points_reversed": intent.points_reversed,
        "livemode": intent.livemode,
        "created": unix(intent.created_at),
        "captured": unix(intent.captured_at),
        "canceled": unix(intent.canceled_at),
    }


def refund_out(refund: Refund) -> dict[str, Any]:
    return {
        "id": refund.public_id,
        "object": "refund",
        "payment": refund.intent.public_id,
        "amount": refund.amount,
        "currency": refund.intent.currency,
        "status": refund.status,
        "reason": refund.reason,
        "failure_code": refund.failure_code or None,
        "points_reversed": refund.points_reversed,
        "livemode": refund.intent.livemode,
        "created": unix(refund.created_at),
    }


PAYMENT_STATUS_EVENTS = {
    PaymentIntent.Status.REQUIRES_CAPTURE: "payment.requires_capture",
    PaymentIntent.Status.SUCCEEDED: "payment.succeeded",
    PaymentIntent.Status.FAILED: "payment.failed",
    PaymentIntent.Status.PROCESSING: "payment.processing",
    PaymentIntent.Status.CANCELED: "payment.canceled",
}
REFUND_STATUS_EVENTS = {
    Refund.Status.SUCCEEDED: "refund.succeeded",
    Refund.Status.FAILED: "refund.failed",
    Refund.Status.PENDING: "refund.pending",
    Refund.Status.UNKNOWN: "refund.pending",
}


def payment_changed(intent: PaymentIntent, *, before: str | None, resumed: bool = False) -> None:
    """`payment.created` for a new payment, then the event of its new status if it moved. `resumed`: a request that
    carries on an interrupted one (`core.idempotency.resumed`), which may have emitted some of them already."""
    body = payment_out(intent)
    emitted = [("payment.created", body)] if before is None else []
    event_type = PAYMENT_STATUS_EVENTS.get(PaymentIntent.Status(intent.status))
    if event_type and intent.status != before:
        emitted.append((event_type, body))
    if resumed:
        told = set(Event.objects.filter(object_id=intent.public_id).values_list("type", flat=True))
        emitted = [(type, payload) for type, payload in emitted if type not in told]
    if emitted:
        events_emit(merchant=intent.merchant, events=emitted, livemode=intent.livemode)


def refund_created(refund: Refund) -> None:
    event_emit(
        merchant=refund.intent.merchant,
        type=REFUND_STATUS_EVENTS[Refund.Status(refund.status)],
        payload=refund_out(refund),
        livemode=refund.intent.livemode,
    )


# --- catching up with changes made outside the API (jobs resolving timeouts, expiring authorisations) ---------------


@dataclass
class CatchUp:
    payments: int = 0
    refunds: int = 0


def events_catch_up(*, window: timedelta = timedelta(minutes=30)) -> CatchUp:
    """Emits the status event of every payment and refund changed recently that has not had it yet.

    The API emits as it changes things; the jobs that settle unknown outcomes and expire authorisations do not, so
    this sweep (every minute) tells merchants about those changes too. One query per kind finds what is missing: the
    objects changed within `window` (payments by a BRIN index on `updated_at` on PostgreSQL) without an event of their
    status's type (one index lookup each, by the event's `object_id`) — usually none.
    """
    since = timezone.now() - window
    done = CatchUp()
    payments = PaymentIntent.objects.filter(updated_at__gte=since, status__in=list(PAYMENT_STATUS_EVENTS))
    for intent in (
        _without_status_event(payments, PAYMENT_STATUS_EVENTS).select_related("merchant", "card__bank").iterator()
    ):
        event_emit(
            merchant=intent.merchant, type=intent.event_type, payload=payment_out(intent), livemode=intent.livemode
        )
        done.payments += 1
    refunds = Refund.objects.filter(Q(created_at__gte=since) | Q(completed_at__gte=since))
    for refund in _without_status_event(refunds, REFUND_STATUS_EVENTS).select_related("intent__merchant").iterator():
        event_emit(
            merchant=refund.intent.merchant,
            type=refund.event_type,
            payload=refund_out(refund),
            livemode=refund.intent.livemode,
        )
        done.refunds += 1
    return done


def _without_status_event(objects: QuerySet[Any], events: Mapping[Any, str]) -> QuerySet[Any]:
    """The objects that have not had the event of their status yet (`event_type` annotated), oldest first: one
    anti-join on the events' (object_id, type) index."""
    event_type = Case(
        *(When(status=status, then=Value(type)) for status, type in events.items()), output_field=CharField()
    )
    told = Event.objects.filter(object_id=OuterRef("public_id"), type=OuterRef("event_type"))
    return objects.annotate(event_type=event_type).filter(~Exists(told)).order_by("id")
