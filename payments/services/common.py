"""What every payments service shares: the state names, the idempotency scope, loading a merchant's payment."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings

from core.errors import NotFound
from merchants.models import Merchant

from ..connectors.base import RemoteState
from ..models import PaymentAttempt, PaymentIntent

Status = PaymentIntent.Status
AttemptStatus = PaymentAttempt.Status
UNRESOLVED = PaymentAttempt.UNRESOLVED
CHARGED = (AttemptStatus.AUTHORIZED, AttemptStatus.CAPTURED)
CHARGED_STATES = (RemoteState.AUTHORIZED, RemoteState.CAPTURED)
MAX_ATTEMPTS = 3
RISK_REVIEW_WINDOW = timedelta(hours=getattr(settings, "PAYMENTS_RISK_REVIEW_HOURS", 24))


def idempotency_scope(merchant: Merchant, livemode: bool) -> str:
    # Test-mode idempotency keys never meet live ones; live keeps the scope it always had.
    return f"merchant:{merchant.pk}" if livemode else f"merchant:{merchant.pk}:test"


def payment_load(public_id: str, merchant: Merchant, livemode: bool) -> PaymentIntent:
    """The merchant's payment in this mode: another mode's payment is not found, like another merchant's."""
    try:
        return PaymentIntent.objects.select_related(
            "channel", "card__product", "card__bank", "merchant", "linked_account", "payment_code"
        ).get(public_id=public_id, merchant=merchant, livemode=livemode)
    except PaymentIntent.DoesNotExist:
        raise NotFound("No such payment.", param="payment") from None
