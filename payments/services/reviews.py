"""Risk review: a payment held at authorisation is approved (captured, or left to the merchant), rejected (voided)
or voided when nobody decides by its deadline. One decision wins: the flag is cleared by a guarded UPDATE.

Four eyes on large amounts: a CNY payment of at least `RISK_REVIEW_SECOND_APPROVAL_MINOR` (in fen), and a payment in
any other currency whatever its amount (Mengka converts nothing, so it cannot tell a small one), needs two different
operators, through the maker-checker mechanism (`core.approvals`, kind "payments.risk_review_release"): the first
approval is a release request (the payment stays held), the second, by another operator of the issuer (or an alliance
operator), approves it and releases the payment. The same operator approving again is refused. A rejection by anyone
voids the payment at any point (a request still waiting is withdrawn); a request expires with the review's deadline.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core.admin_display import money_text
from core.approvals import ApprovalKind, approval_approve, approval_request
from core.audit import acting_bank, audit_record
from core.errors import ChannelError, Conflict, NotFound, PermissionDenied, ValidationFailed
from core.models import ApprovalRequest
from core.text import id_or_none
from merchants.models import Merchant

from .. import events
from ..models import PaymentIntent, RiskDecision
from .cancel import cancel
from .capture import capture
from .common import Status, needs_two_operators

logger = logging.getLogger("payments.services")

RISK_REVIEW_RELEASE = "payments.risk_review_release"
RISK_REVIEW_PERMISSION = "payments.change_riskreview"


def _load_under_review(payment_id: str) -> PaymentIntent:
    intent: PaymentIntent | None = PaymentIntent.objects.find(
        payment_id, lambda payments: payments.select_related("channel", "card__product", "merchant")
    )
    if intent is None:
        raise NotFound("No such payment.", param="payment")
    return intent


def _take_review(intent: PaymentIntent, decision: str) -> None:
    taken = (
        PaymentIntent.objects.one(intent)
        .filter(risk_review=True, status=Status.REQUIRES_CAPTURE)
        .update(risk_review=False, risk_decision=decision, updated_at=timezone.now())
    )
    if not taken:
        raise Conflict("This payment is not waiting for a risk decision.", code="risk_review_not_pending")
    intent.risk_review, intent.risk_decision = False, decision


def _restore_review(intent: PaymentIntent) -> None:
    PaymentIntent.objects.one(intent).filter(status=Status.REQUIRES_CAPTURE).update(risk_review=True, risk_decision="")


def risk_review_needs_two(intent: PaymentIntent) -> bool:
    """Whether releasing this payment takes two different operators (see the module's docstring)."""
    return needs_two_operators(
        amount=intent.amount, currency=intent.currency, above=settings.RISK_REVIEW_SECOND_APPROVAL_MINOR - 1
    )  # "at least" the setting


def risk_release_requests_pending(payment_id: str) -> QuerySet[ApprovalRequest]:
    """The requests to release this payment still waiting in the approval queue (at most one)."""
    return ApprovalRequest.objects.filter(
        kind=RISK_REVIEW_RELEASE,
        status=ApprovalRequest.Status.PENDING,
        expires_at__gt=timezone.now(),
        payload__payment_id=payment_id,
    )


def _locked_under_review(payment_id: Any) -> PaymentIntent:
    """The payment, locked, while it waits for a risk decision and its review has not run out."""
    intent: PaymentIntent | None = PaymentIntent.objects.find(
        str(payment_id),
        lambda payments: (
            payments.select_for_update(of=("self",))
            .select_related("merchant")
            .filter(risk_review=True, status=Status.REQUIRES_CAPTURE)
        ),
    )
    if intent is None:
        raise Conflict(_("This payment is not waiting for a risk decision."), code="risk_review_not_pending")
    if intent.risk_review_deadline is not None and intent.risk_review_deadline <= timezone.now():
        raise Conflict(_("This payment's risk review has run out: it is voided."), code="risk_review_expired")
    return intent


def risk_release_validate(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload of a release request: the payment. Run when asked and again when approved (the request itself is
    then no longer pending): the payment must still be under review, before its deadline."""
    intent = _locked_under_review(payload.get("payment_id"))
    if risk_release_requests_pending(intent.public_id).exists():
        raise Conflict(
            _("Its release was already requested: a second operator approves it."), code="risk_release_requested"
        )
    return {
        "payment_id": intent.public_id,
        "merchant_id": intent.merchant_id,
        "amount": intent.amount,
        "currency": intent.currency,
    }


def risk_release_bank(payload: dict[str, Any]) -> int | None:
    """The bank whose operator checks a release: the card's issuer, whose risk it is."""
    row: tuple[int | None] | None = PaymentIntent.objects.find(
        payload["payment_id"], lambda payments: payments.values_list("issuer_id")
    )
    if row is None:
        raise PaymentIntent.DoesNotExist
    return row[0]


def risk_release_describe(payload: dict[str, Any]) -> list[tuple[str, str]]:
    pk = id_or_none(str(payload.get("merchant_id")))
    merchant = None if pk is None else Merchant.objects.filter(pk=pk).first()
    return [
        (_("payment"), str(payload.get("payment_id", "-"))),
        (_("merchant"), str(merchant) if merchant is not None else f"#{payload.get('merchant_id')}"),
        (_("amount"), money_text(int(payload.get("amount") or 0), str(payload.get("currency", "")))),
    ]


def risk_release_apply(payload: dict[str, Any], maker: AbstractBaseUser, checker: AbstractBaseUser) -> PaymentIntent:
    """Releases the payment (the kind's `apply`, inside the approval's transaction, after `risk_release_validate`):
    the review is closed as approved; a payment the merchant asked to capture automatically is captured once the
    approval is committed (the channel is called outside the transaction; if it refuses, the payment is under review
    again)."""
    intent = _locked_under_review(payload["payment_id"])
    _take_review(intent, RiskDecision.APPROVED)
    audit_record(
        actor=checker,
        action="payment.risk_approved",
        obj=intent,
        after={"requested_by": maker.pk},
        bank_id=_review_bank(intent, checker),
    )
    if intent.capture_method == PaymentIntent.CaptureMethod.AUTOMATIC:
        transaction.on_commit(partial(_capture_released, intent.pk))
    else:
        events.payment_review_closed(_load_under_review(intent.public_id))
    return intent


def _capture_released(payment_pk: int) -> None:
    """After a release was committed: the capture, outside any transaction. A refusal puts the payment back under
    review (audited), as a direct approval would."""
    intent = PaymentIntent.objects.select_related("channel", "card__product", "merchant").get(pk=payment_pk)
    try:
        capture(intent, None)
    except (Conflict, ChannelError, ValidationFailed) as error:
        _restore_review(intent)
        logger.warning("capture after the release of %s failed: %s", intent.public_id, error)
        audit_record(
            actor=None, action="payment.risk_capture_failed", obj=intent, after={"error": str(error)},
            bank_id=intent.issuer_id,
        )  # fmt: skip
        return
    with transaction.atomic():
        events.payment_review_closed(_load_under_review(intent.public_id))


RISK_REVIEW_RELEASE_KIND = ApprovalKind(
    code=RISK_REVIEW_RELEASE,
    label=gettext_lazy("Release a payment held for risk review"),
    permission=RISK_REVIEW_PERMISSION,
    validate=risk_release_validate,
    bank_of=risk_release_bank,
    apply=risk_release_apply,
    describe=risk_release_describe,
)


def _release_with_two(intent: PaymentIntent, actor: Any, reason: str) -> PaymentIntent:
    """The first operator's approval makes a release request (the payment stays held); a second, different operator's
    approves it through the approval queue. The request expires with the review at the latest."""
    if getattr(actor, "pk", None) is None:
        raise PermissionDenied(
            _("This payment needs the approval of two different operators."), code="second_approval_required"
        )
    request = risk_release_requests_pending(intent.public_id).first()
    if request is None:
        if not actor.has_perm(RISK_REVIEW_PERMISSION):
            raise PermissionDenied(_("Your role may not release payments held for review."), code="release_not_allowed")
        with transaction.atomic():
            made = approval_request(
                kind=RISK_REVIEW_RELEASE,
                payload={"payment_id": intent.public_id},
                reason=reason.strip() or _("A held payment at or above the second-approval threshold."),
                maker=actor,
            )
            deadline = intent.risk_review_deadline
            if deadline is not None and deadline < made.expires_at:
                ApprovalRequest.objects.filter(pk=made.pk).update(expires_at=deadline)
        return _load_under_review(intent.public_id)
    if request.maker_id == actor.pk:
        raise PermissionDenied(
            _("You gave the first approval: a different operator must give the second."),
            code="second_approval_same_operator",
        )
    approval_approve(request_id=request.pk, checker=actor)
    return _load_under_review(intent.public_id)


def risk_review_approve(*, payment_id: str, actor: Any, reason: str = "") -> PaymentIntent:
    """Releases a held payment: captured now if the merchant asked for automatic capture, else left to the merchant.
    Where two approvals are needed, the first makes a release request in the approval queue and the payment stays held
    (`risk_review` still true); the second approves that request."""
    intent = _load_under_review(payment_id)
    if risk_review_needs_two(intent):
        return _release_with_two(intent, actor, reason)
    _take_review(intent, RiskDecision.APPROVED)
    if intent.capture_method == PaymentIntent.CaptureMethod.AUTOMATIC:
        try:
            capture(intent, None)
        except (Conflict, ChannelError, ValidationFailed):
            _restore_review(intent)
            raise
    decided = _load_under_review(payment_id)
    with transaction.atomic():
        audit_record(actor=actor, action="payment.risk_approved", obj=intent, bank_id=_review_bank(intent, actor))
        events.payment_review_closed(decided)
    return decided


def _withdraw_release_requests(intent: PaymentIntent) -> list[int]:
    """A payment rejected or run out: a release request still waiting has nothing left to release."""
    withdrawn = list(risk_release_requests_pending(intent.public_id).values_list("pk", flat=True))
    ApprovalRequest.objects.filter(pk__in=withdrawn, status=ApprovalRequest.Status.PENDING).update(
        status=ApprovalRequest.Status.CANCELLED, decided_at=timezone.now()
    )
    return withdrawn


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
        withdrawn = _withdraw_release_requests(intent)
        audit_record(
            actor=actor, action="payment.risk_rejected", obj=intent, reason=reason, bank_id=_review_bank(intent, actor),
            after={"release_requests_withdrawn": withdrawn} if withdrawn else None,
        )  # fmt: skip
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
            withdrawn = _withdraw_release_requests(intent)
            audit_record(
                actor=None, action="payment.risk_review_expired", obj=intent,
                after={"release_requests_withdrawn": withdrawn} if withdrawn else None,
            )  # fmt: skip
            events.payment_review_closed(_load_under_review(intent.public_id))
        expired += 1
    return expired


def _review_bank(intent: PaymentIntent, actor: Any) -> int | None:
    """The bank a review decision is filed under in the audit log: that of the operator who decided, among the
    payment's banks (issuer, acquirer, sponsor), so their own bank's auditors see it; the issuer's when an alliance
    operator decided."""
    banks = {bank for bank in (intent.issuer_id, intent.acquirer_id, intent.merchant.sponsor_bank_id) if bank}
    return acting_bank(actor, banks) or intent.issuer_id
