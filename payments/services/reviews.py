"""Risk review: a payment held at authorisation is approved (captured, or left to the merchant), rejected (voided)
or voided when nobody decides by its deadline. One decision wins: the flag is cleared by a guarded UPDATE.

Four eyes on large amounts: a CNY payment of at least `RISK_REVIEW_SECOND_APPROVAL_MINOR` (in fen), and a payment in
any other currency whatever its amount (Mengka converts nothing, so it cannot tell a small one), needs two different
operators. The first approval is recorded (who, when) and leaves the payment held; the second, by another operator,
releases it. The same operator approving again is refused. A rejection by anyone voids it at any point.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from core.audit import acting_bank, audit_record
from core.errors import ChannelError, Conflict, NotFound, PermissionDenied, ValidationFailed

from .. import events
from ..models import PaymentIntent, RiskDecision, RiskReviewApproval
from .cancel import cancel
from .capture import capture
from .common import Status, needs_two_operators

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


def risk_review_needs_two(intent: PaymentIntent) -> bool:
    """Whether releasing this payment takes two different operators (see the module's docstring)."""
    return needs_two_operators(
        amount=intent.amount, currency=intent.currency, above=settings.RISK_REVIEW_SECOND_APPROVAL_MINOR - 1
    )  # "at least" the setting


@transaction.atomic
def _first_approval_or_second(intent: PaymentIntent, actor: Any) -> bool:
    """Under the payment's row lock: records the first approval (True: the payment stays held) or lets a second,
    different operator through (False). Refuses an approval without an operator, and the same operator twice."""
    if getattr(actor, "pk", None) is None:
        raise PermissionDenied(
            _("This payment needs the approval of two different operators."), code="second_approval_required"
        )
    locked = (
        PaymentIntent.objects.select_for_update()
        .filter(pk=intent.pk, risk_review=True, status=Status.REQUIRES_CAPTURE)
        .values_list("pk", flat=True)
        .first()
    )
    if locked is None:
        raise Conflict(_("This payment is not waiting for a risk decision."), code="risk_review_not_pending")
    first = RiskReviewApproval.objects.filter(payment_id=intent.pk).first()
    if first is None:
        approval = RiskReviewApproval.objects.create(payment_id=intent.pk, approved_by=actor)
        audit_record(
            actor=actor,
            action="payment.risk_first_approval",
            obj=intent,
            after={"approved_by": actor.pk, "approved_at": approval.approved_at.isoformat()},
            bank_id=_review_bank(intent, actor),
        )
        return True
    if first.approved_by_id == actor.pk:
        raise PermissionDenied(
            _("You gave the first approval: a different operator must give the second."),
            code="second_approval_same_operator",
        )
    return False


def risk_review_approve(*, payment_id: str, actor: Any) -> PaymentIntent:
    """Releases a held payment: captured now if the merchant asked for automatic capture, else left to the merchant.
    Where two approvals are needed, the first is recorded and the payment stays held (`risk_review` still true)."""
    intent = _load_under_review(payment_id)
    needs_two = risk_review_needs_two(intent)
    if needs_two and _first_approval_or_second(intent, actor):
        return _load_under_review(payment_id)
    _take_review(intent, RiskDecision.APPROVED)
    if intent.capture_method == PaymentIntent.CaptureMethod.AUTOMATIC:
        try:
            capture(intent, None)
        except (Conflict, ChannelError, ValidationFailed):
            _restore_review(intent)
            raise
    first = RiskReviewApproval.objects.filter(payment_id=intent.pk).values_list("approved_by_id", flat=True).first()
    decided = _load_under_review(payment_id)
    with transaction.atomic():
        audit_record(
            actor=actor,
            action="payment.risk_approved",
            obj=intent,
            after={"first_approved_by": first} if needs_two else None,
            bank_id=_review_bank(intent, actor),
        )
        events.payment_review_closed(decided)
    return decided


def risk_review_reject(*, payment_id: str, actor: Any, reason: str = "risk_rejected") -> PaymentIntent:
    """Voids a held payment."""
    intent = _load_under_review(payment_id)
    _take_review(intent, RiskDecision.REJECTED)
    try:
        cancel(intent, reason)
    except (Conflict, ChannelError):
        _restore_review(intent)
        raise
    decided = _load_under_review(payment_id)
    with transaction.atomic():
        audit_record(
            actor=actor, action="payment.risk_rejected", obj=intent, reason=reason, bank_id=_review_bank(intent, actor)
        )
        events.payment_review_closed(decided)
    return decided


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
        with transaction.atomic():
            audit_record(actor=None, action="payment.risk_review_expired", obj=intent)
            events.payment_review_closed(_load_under_review(intent.public_id))
        expired += 1
    return expired


def _review_bank(intent: PaymentIntent, actor: Any) -> int | None:
    """The bank a review decision is filed under in the audit log: that of the operator who decided, among the
    payment's banks (issuer, acquirer, sponsor), so their own bank's auditors see it; the issuer's when an alliance
    operator decided."""
    banks = {bank for bank in (intent.issuer_id, intent.acquirer_id, intent.merchant.sponsor_bank_id) if bank}
    return acting_bank(actor, banks) or intent.issuer_id
