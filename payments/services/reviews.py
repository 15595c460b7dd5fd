"""Risk review: a payment held at authorisation is approved (captured, or left to the merchant), rejected (voided)
or voided when nobody decides by its deadline. One decision wins: the flag is cleared by a guarded UPDATE."""

from __future__ import annotations

import logging
from typing import Any

from django.utils import timezone

from core.audit import audit_record
from core.errors import ChannelError, Conflict, NotFound, ValidationFailed

from ..models import PaymentIntent, RiskDecision
from .cancel import cancel
from .capture import capture
from .common import Status

logger = logging.getLogger("payments.services")


def _load_under_review(payment_id: str) -> PaymentIntent:
    try:
        return PaymentIntent.objects.select_related("channel", "card__product", "merchant").get(public_id=payment_id)
    except PaymentIntent.DoesNotExist:
        raise NotFound("No such payment.", param="payment") from None


def _take_review(intent: PaymentIntent, decision: str) -> None:
    taken = PaymentIntent.objects.filter(pk=intent.pk, risk_review=True, status=Status.REQUIRES_CAPTURE).update(
        risk_review=False, risk_decision=decision, updated_at=timezone.now()
    )
    if not taken:
        raise Conflict("This payment is not waiting for a risk decision.", code="risk_review_not_pending")
    intent.risk_review, intent.risk_decision = False, decision


def _restore_review(intent: PaymentIntent) -> None:
    PaymentIntent.objects.filter(pk=intent.pk, status=Status.REQUIRES_CAPTURE).update(
        risk_review=True, risk_decision=""
    )


def risk_review_approve(*, payment_id: str, actor: Any) -> PaymentIntent:
    """Releases a held payment: captured now if the merchant asked for automatic capture, else left to the merchant."""
    intent = _load_under_review(payment_id)
    _take_review(intent, RiskDecision.APPROVED)
    if intent.capture_method == PaymentIntent.CaptureMethod.AUTOMATIC:
        try:
            capture(intent, None)
        except (Conflict, ChannelError, ValidationFailed):
            _restore_review(intent)
            raise
    audit_record(actor=actor, action="payment.risk_approved", obj=intent, bank_id=intent.issuer_id)
    return _load_under_review(payment_id)


def risk_review_reject(*, payment_id: str, actor: Any, reason: str = "risk_rejected") -> PaymentIntent:
    """Voids a held payment."""
    intent = _load_under_review(payment_id)
    _take_review(intent, RiskDecision.REJECTED)
    try:
        cancel(intent, reason)
    except (Conflict, ChannelError):
        _restore_review(intent)
        raise
    audit_record(actor=actor, action="payment.risk_rejected", obj=intent, reason=reason, bank_id=intent.issuer_id)
    return _load_under_review(payment_id)


def risk_reviews_expire() -> int:
    """Voids held payments nobody decided on by their deadline."""
    expired = 0
    due = PaymentIntent.objects.filter(
        risk_review=True, status=Status.REQUIRES_CAPTURE, risk_review_deadline__lte=timezone.now()
    ).select_related("channel", "merchant")
    for intent in due:
        try:
            _take_review(intent, RiskDecision.EXPIRED)
        except Conflict:
            continue  # decided meanwhile
        try:
            cancel(intent, "risk_review_expired")
        except (Conflict, ChannelError):
            _restore_review(intent)
            logger.warning("could not void expired review %s; will retry", intent.public_id)
            continue
        audit_record(actor=None, action="payment.risk_review_expired", obj=intent)
        expired += 1
    return expired
