"""Events about payments and refunds for the merchant's webhooks, emitted by the API after each state change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from merchants.services import event_emit

from .models import PaymentIntent, Refund

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


def payment_changed(
    intent: PaymentIntent, *, before: str | None, render: Callable[[PaymentIntent], dict[str, Any]]
) -> None:
    """`payment.created` for a new payment, then the event of its new status if it moved."""
    if before is None:
        event_emit(merchant=intent.merchant, type="payment.created", payload=render(intent))
    event_type = PAYMENT_STATUS_EVENTS.get(PaymentIntent.Status(intent.status))
    if event_type and intent.status != before:
        event_emit(merchant=intent.merchant, type=event_type, payload=render(intent))


def refund_created(refund: Refund, *, render: Callable[[Refund], dict[str, Any]]) -> None:
    event_emit(
        merchant=refund.intent.merchant,
        type=REFUND_STATUS_EVENTS[Refund.Status(refund.status)],
        payload=render(refund),
    )
