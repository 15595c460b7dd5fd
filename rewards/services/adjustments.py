"""Manual adjustments, four eyes: one operator requests, another approves (the adjustment posts) or rejects.

A request names a cardholder who holds a card at the programme's bank (bound: active, frozen or closed) and a
non-zero amount of at most `POINTS_ADJUSTMENT_MAX` points either way; both are checked when it is requested and again
when it is approved. A credit forms a lot as an earn does; a debit spends lots as a redemption does. Every request and
decision is audited.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from core.audit import audit_record
from core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from members.models import BindingStatus, Card, Cardholder, PointsProgram

from ..models import AdjustmentRequest, LedgerTransaction, Purpose
from .accounts import bank_ref, debt_ref, wallet_ref
from .expiry import expire_overdue
from .lots import credit_wallet, spend, today
from .posting import Kind, begin, finish, keyed, replay, request_hash, retry_on_conflict

BOUND_CARD = (BindingStatus.ACTIVE, BindingStatus.FROZEN, BindingStatus.CLOSED)


def adjustment_check(*, cardholder_id: int | None, program: PointsProgram, amount: int) -> None:
    """Refuses what no adjustment may be: a cardholder who does not exist or holds no card at the programme's bank, or
    an amount that is zero, not whole or beyond `POINTS_ADJUSTMENT_MAX` either way. Writes nothing."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
        raise ValidationFailed(_("An adjustment is a non-zero whole number of points."), param="amount")
    limit = settings.POINTS_ADJUSTMENT_MAX
    if abs(amount) > limit:
        raise ValidationFailed(
            _("An adjustment is at most %(limit)d points either way.") % {"limit": limit},
            code="adjustment_out_of_bounds",
            param="amount",
        )
    if cardholder_id is None or not Cardholder.objects.filter(pk=cardholder_id).exists():
        raise NotFound(_("No such cardholder."), param="cardholder")
    if not Card.objects.filter(cardholder_id=cardholder_id, bank_id=program.bank_id, status__in=BOUND_CARD).exists():
        raise ValidationFailed(
            _("This cardholder holds no card at the programme's bank."),
            code="cardholder_not_at_bank",
            param="cardholder",
        )


@transaction.atomic
def adjustment_request(
    *, cardholder_id: int, program: PointsProgram, amount: int, reason: str, requested_by: AbstractBaseUser
) -> AdjustmentRequest:
    adjustment_check(cardholder_id=cardholder_id, program=program, amount=amount)
    if not reason.strip():
        raise ValidationFailed(_("Give a reason for the adjustment."), param="reason")
    request = AdjustmentRequest.objects.create(
        cardholder_id=cardholder_id,
        program=program,
        bank_id=program.bank_id,
        amount=amount,
        reason=reason.strip(),
        requested_by=requested_by,  # type: ignore[misc]
    )
    audit_record(
        actor=requested_by,
        action="ledger.adjustment.request",
        obj=request,
        after={"cardholder_id": cardholder_id, "program": program.unit_code, "amount": amount},
        reason=request.reason,
        bank_id=program.bank_id,
    )
    return request


def _locked_request(request_id: int) -> AdjustmentRequest:
    request = AdjustmentRequest.objects.select_for_update().filter(pk=request_id).first()
    if request is None:
        raise NotFound(_("No such adjustment request."), param="request")
    return request


def _decide(request: AdjustmentRequest, approver: AbstractBaseUser) -> AdjustmentRequest:
    if request.status != AdjustmentRequest.Status.PENDING:
        raise Conflict(_("This adjustment was already decided."))
    if request.requested_by_id == approver.pk:
        raise PermissionDenied(_("A second operator must approve an adjustment."))
    return request


@retry_on_conflict
def adjustment_approve(*, request_id: int, approver: AbstractBaseUser) -> LedgerTransaction:
    """A different operator approves: the adjustment posts (a credit forms a lot; a debit spends lots). The same
    approval again returns the transaction it posted; another operator's, `IdempotencyConflict`."""
    key = f"adjustment:{request_id}"
    digest = request_hash(op="adjust", request=request_id, approver=approver.pk)

    def post() -> LedgerTransaction:
        request = _locked_request(request_id)
        if request.status == AdjustmentRequest.Status.POSTED:
            existing = replay(LedgerTransaction, key, digest)
            if existing is not None:
                return existing
        _decide(request, approver)
        program = request.program
        adjustment_check(cardholder_id=request.cardholder_id, program=program, amount=request.amount)
        wallet, debt = wallet_ref(request.cardholder_id, program), debt_ref(request.cardholder_id, program)
        issuance = bank_ref(program, Purpose.ISSUANCE, request.cardholder_id)
        breakage = bank_ref(program, Purpose.BREAKAGE, request.cardholder_id)
        posting = begin(
            kind=Kind.ADJUST,
            key=key,
            digest=digest,
            refs=[wallet, debt, issuance, *([breakage] if request.amount < 0 else [])],
            actor=approver,
            metadata={
                "cardholder_id": request.cardholder_id,
                "program_id": program.pk,
                "direction": 1 if request.amount > 0 else -1,
                "adjustment_request": request.pk,
                "reason": request.reason,
                "requested_by": request.requested_by_id,
            },
            points=abs(request.amount),
        )
        locked_wallet = posting.account(wallet)
        if request.amount > 0:
            posting.leg(posting.account(issuance), -request.amount)
            credit_wallet(
                posting,
                wallet=locked_wallet,
                debt=posting.account(debt),
                program=program,
                amount=request.amount,
                earned_on=today(),
            )
        else:
            lots = expire_overdue(locked_wallet, posting.account(breakage))
            spend(posting, locked_wallet, posting.account(issuance), -request.amount, lots)
        txn = finish(posting)
        request.status, request.decided_at = AdjustmentRequest.Status.POSTED, timezone.now()
        request.decided_by = approver  # type: ignore[assignment]
        request.transaction = txn
        request.save(update_fields=["status", "decided_by", "decided_at", "transaction"])
        audit_record(
            actor=approver,
            action="ledger.adjustment.approve",
            obj=request,
            after={"transaction": txn.pk, "amount": request.amount},
            reason=request.reason,
            bank_id=request.bank_id,
        )
        return txn

    return keyed(LedgerTransaction, key, digest, post)


@transaction.atomic
def adjustment_reject(*, request_id: int, approver: AbstractBaseUser, reason: str = "") -> AdjustmentRequest:
    request = _decide(_locked_request(request_id), approver)
    request.status, request.decided_at = AdjustmentRequest.Status.REJECTED, timezone.now()
    request.decided_by = approver  # type: ignore[assignment]
    request.save(update_fields=["status", "decided_by", "decided_at"])
    audit_record(actor=approver, action="ledger.adjustment.reject", obj=request, reason=reason, bank_id=request.bank_id)
    return request
