"""Freezing a merchant's payouts, and lifting the freeze with four eyes.

A freeze takes effect at once: the merchant's batches still settle, but are held and show why. Lifting it lets that
money be paid, so one operator of the sponsor bank asks (an `UnfreezeRequest`) and a second one approves, as with a
settlement account change. A new freeze withdraws a request still pending: it was asked about another freeze.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from core.audit import audit_record
from core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed

from ..models import Merchant, UnfreezeRequest
from .common import require_operator_of

Status = UnfreezeRequest.Status


def _freeze_state(merchant: Merchant) -> dict[str, Any]:
    return {"payouts_frozen": merchant.payouts_frozen, "frozen_reason": merchant.frozen_reason}


def _locked_merchant(merchant_id: int) -> Merchant:
    try:
        return Merchant.objects.select_for_update().get(pk=merchant_id)
    except Merchant.DoesNotExist:
        raise NotFound(_("No such merchant."), param="merchant") from None


@transaction.atomic
def payouts_freeze(*, merchant_id: int, reason: str, actor: Any) -> Merchant:
    """Freezes the merchant's payouts now, or restates why they are frozen."""
    merchant = _locked_merchant(merchant_id)
    require_operator_of(actor, merchant.sponsor_bank_id)
    reason = reason.strip()
    if not reason:
        raise ValidationFailed(
            _("Say why the payouts are frozen: the merchant's held batches show it."),
            code="frozen_reason_required",
            param="frozen_reason",
        )
    if merchant.payouts_frozen and merchant.frozen_reason == reason:
        return merchant
    before = _freeze_state(merchant)
    merchant.payouts_frozen, merchant.frozen_reason = True, reason
    merchant.save(update_fields=["payouts_frozen", "frozen_reason"])
    withdrawn = UnfreezeRequest.objects.filter(merchant=merchant, status=Status.PENDING).update(
        status=Status.WITHDRAWN, decided_at=timezone.now()
    )
    audit_record(
        actor=actor,
        action="merchant.payouts_freeze",
        obj=merchant,
        before=before,
        after={**_freeze_state(merchant), "unfreeze_requests_withdrawn": withdrawn},
        bank_id=merchant.sponsor_bank_id,
    )
    return merchant


def payouts_unfreeze_check(*, merchant: Merchant) -> None:
    """Refuses a request to lift a freeze that is not there, or that is already asked for."""
    if not merchant.payouts_frozen:
        raise Conflict(_("This merchant's payouts are not frozen."), code="payouts_not_frozen", param="merchant")
    if UnfreezeRequest.objects.filter(merchant=merchant, status=Status.PENDING).exists():
        raise Conflict(
            _("A request to lift this freeze is already waiting for approval."),
            code="unfreeze_pending",
            param="merchant",
        )


@transaction.atomic
def payouts_unfreeze_request(*, merchant_id: int, note: str, actor: Any) -> UnfreezeRequest:
    """Asks for the freeze to be lifted; nothing changes until a second operator approves."""
    merchant = _locked_merchant(merchant_id)
    require_operator_of(actor, merchant.sponsor_bank_id)
    if actor is None or not getattr(actor, "pk", None):
        raise PermissionDenied(_("An operator asks for a freeze to be lifted."), code="operator_required")
    payouts_unfreeze_check(merchant=merchant)
    request = UnfreezeRequest.objects.create(
        merchant=merchant, frozen_reason=merchant.frozen_reason, note=note.strip(), requested_by=actor
    )
    audit_record(
        actor=actor,
        action="merchant.payouts_unfreeze_request",
        obj=request,
        after={"merchant": merchant.pk, "frozen_reason": request.frozen_reason, "note": request.note},
        bank_id=merchant.sponsor_bank_id,
    )
    return request


def _locked_request(unfreeze_id: int) -> tuple[UnfreezeRequest, Merchant]:
    """The request and its merchant, locked merchant first (the order `payouts_freeze` takes them in)."""
    merchant_id = UnfreezeRequest.objects.filter(pk=unfreeze_id).values_list("merchant_id", flat=True).first()
    if merchant_id is None:
        raise NotFound(_("No such request."), param="unfreeze_request")
    merchant = _locked_merchant(merchant_id)
    return UnfreezeRequest.objects.select_for_update().get(pk=unfreeze_id), merchant


@transaction.atomic
def payouts_unfreeze_approve(*, unfreeze_id: int, actor: Any) -> Merchant:
    """Lifts the freeze; the approver must be another operator than the one who asked (four eyes)."""
    request, merchant = _locked_request(unfreeze_id)
    require_operator_of(actor, merchant.sponsor_bank_id)
    if request.status != Status.PENDING:
        raise Conflict(_("This request is %(status)s.") % {"status": request.get_status_display()}, code="decided")
    if actor is None or actor.pk == request.requested_by_id:
        raise PermissionDenied(_("A second operator must approve lifting a payout freeze."), code="four_eyes")
    before = _freeze_state(merchant)
    merchant.payouts_frozen, merchant.frozen_reason = False, ""
    merchant.save(update_fields=["payouts_frozen", "frozen_reason"])
    request.status, request.decided_by, request.decided_at = Status.APPROVED, actor, timezone.now()
    request.save(update_fields=["status", "decided_by", "decided_at"])
    audit_record(
        actor=actor,
        action="merchant.payouts_unfreeze",
        obj=merchant,
        before=before,
        after={**_freeze_state(merchant), "unfreeze_request": request.pk, "requested_by": request.requested_by_id},
        bank_id=merchant.sponsor_bank_id,
    )
    return merchant


@transaction.atomic
def payouts_unfreeze_reject(*, unfreeze_id: int, actor: Any) -> UnfreezeRequest:
    """Turns the request down (its asker may withdraw it this way too); the payouts stay frozen."""
    request, merchant = _locked_request(unfreeze_id)
    require_operator_of(actor, merchant.sponsor_bank_id)
    if request.status != Status.PENDING:
        raise Conflict(_("This request is %(status)s.") % {"status": request.get_status_display()}, code="decided")
    request.status, request.decided_by, request.decided_at = Status.REJECTED, actor, timezone.now()
    request.save(update_fields=["status", "decided_by", "decided_at"])
    audit_record(
        actor=actor,
        action="merchant.payouts_unfreeze_reject",
        obj=request,
        before={"status": Status.PENDING},
        after={"status": request.status},
        bank_id=merchant.sponsor_bank_id,
    )
    return request
