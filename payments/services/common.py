"""What every payments service shares: the state names, the idempotency scope, loading a merchant's payment."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from core.errors import Conflict, NotFound
from core.idempotency import run_idempotent
from merchants.models import Merchant

from ..connectors.base import RemoteState
from ..models import PaymentAttempt, PaymentIntent
from ..selectors import archived_payment_month
from ..windows import capture_window, refund_window

Status = PaymentIntent.Status
AttemptStatus = PaymentAttempt.Status
UNRESOLVED = PaymentAttempt.UNRESOLVED
CHARGED = (AttemptStatus.AUTHORIZED, AttemptStatus.CAPTURED)
CHARGED_STATES = (RemoteState.AUTHORIZED, RemoteState.CAPTURED)
MAX_ATTEMPTS = 3
RISK_REVIEW_WINDOW = timedelta(hours=getattr(settings, "PAYMENTS_RISK_REVIEW_HOURS", 24))


def needs_two_operators(*, amount: int, currency: str, above: int) -> bool:
    """Whether moving this money takes two different operators: more than `above` minor units of CNY, or any amount
    in another currency (Mengka converts nothing, so it cannot tell a small one)."""
    return currency != "CNY" or amount > above


def idempotency_scope(merchant: Merchant, livemode: bool) -> str:
    # Test-mode idempotency keys never meet live ones; live keeps the scope it always had.
    return f"merchant:{merchant.pk}" if livemode else f"merchant:{merchant.pk}:test"


def payment_save(payment: PaymentIntent, *fields: str) -> None:
    """Writes the loaded payment's `fields` to its row in its month's partition (a model's `save()` names the id
    alone, reading every month); `updated_at`, when named, is now, as `save()` would make it."""
    if "updated_at" in fields:
        payment.updated_at = timezone.now()
    PaymentIntent.objects.one(payment).update(**{name: getattr(payment, name) for name in fields})


def capture_window_check(payment: PaymentIntent) -> None:
    """Refuses to confirm or capture a payment made more than PAYMENT_CAPTURE_DAYS ago: the database holds a
    payment's business date to that window (payments/windows.py)."""
    if timezone.now() >= payment.created_at + capture_window():
        raise Conflict(
            f"This payment was made more than {settings.PAYMENT_CAPTURE_DAYS} days ago; it can no longer be confirmed"
            " or captured.",
            code="capture_window_closed",
        )


def refund_window_check(payment: PaymentIntent) -> None:
    """Refuses to refund a payment captured more than REFUND_WINDOW_DAYS ago."""
    if payment.captured_at is not None and timezone.now() >= payment.captured_at + refund_window():
        raise Conflict(
            f"This payment was captured more than {settings.REFUND_WINDOW_DAYS} days ago; it can no longer be"
            " refunded.",
            code="refund_window_closed",
        )


def payment_load(public_id: str, merchant: Merchant, livemode: bool) -> PaymentIntent:
    """The merchant's payment in this mode: another mode's payment is not found, like another merchant's."""
    payment: PaymentIntent | None = PaymentIntent.objects.find(
        public_id,
        lambda payments: payments.select_related(
            "channel", "card__product", "card__bank", "merchant", "linked_account", "payment_code"
        ).filter(merchant=merchant, livemode=livemode),
    )
    if payment is None:
        raise payment_missing(public_id, merchant, livemode, param="payment")
    return payment


def payment_missing(public_id: str, merchant: Merchant, livemode: bool, *, param: str) -> NotFound:
    """The error for a payment id that finds none of the merchant's payments in this mode: one of them in a month that
    was archived says so (`selectors.archived_payment_month`), any other is "No such payment"."""
    month = archived_payment_month(public_id, livemode=livemode, merchant_id=merchant.pk)
    if month is not None:
        return NotFound(
            f"Payments made in {month:%Y-%m} have been archived: this one can no longer be read or changed here.",
            code="payment_archived",
            param=param,
        )
    return NotFound("No such payment.", param=param)


def payment_keyed(
    *,
    merchant: Merchant,
    payment_id: str,
    idempotency_key: str,
    livemode: bool,
    operation: str,
    request: dict[str, Any],
    apply: Callable[[PaymentIntent], None],
) -> PaymentIntent:
    """Runs `apply` on the merchant's payment once per idempotency key (a replay applies nothing) and returns the
    payment as it is now: the one shape of confirm, capture and cancel."""

    def execute() -> dict[str, Any]:
        apply(payment_load(payment_id, merchant, livemode))
        return {"payment": payment_id}

    run_idempotent(
        scope=idempotency_scope(merchant, livemode),
        key=idempotency_key,
        operation=operation,
        request={"payment": payment_id, **request},
        execute=execute,
    )
    return payment_load(payment_id, merchant, livemode)
