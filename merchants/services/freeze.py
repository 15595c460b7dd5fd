"""Freezing a merchant's payouts, and lifting the freeze with four eyes.

A freeze takes effect at once: the merchant's batches still settle, but are held and show why. Lifting it lets that
money be paid, so one operator of the sponsor bank asks and a second one approves, through the maker-checker mechanism
(`core.approvals`, kind "merchants.payouts_unfreeze"): the request waits in the approval queue, and the approval lifts
the freeze in its own transaction. A new freeze cancels a request still pending: it was asked about another freeze.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import models, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core.approvals import ApprovalKind, approval_request
from core.audit import audit_record
from core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from core.models import ApprovalRequest
from core.text import id_or_none

from ..models import Merchant
from .common import merchant_request_bank, merchant_request_line, require_operator_of

PAYOUTS_UNFREEZE = "merchants.payouts_unfreeze"
UNFREEZE_PERMISSION = "merchants.unfreeze_payouts"


def _freeze_state(merchant: Merchant) -> dict[str, Any]:
    return {"payouts_frozen": merchant.payouts_frozen, "frozen_reason": merchant.frozen_reason}


def _locked_merchant(merchant_id: Any) -> Merchant:
    pk = id_or_none(str(merchant_id))
    merchant = None if pk is None else Merchant.objects.select_for_update().filter(pk=pk).first()
    if merchant is None:
        raise NotFound(_("No such merchant."), param="merchant")
    return merchant


def unfreeze_requests_pending(merchant_id: int) -> models.QuerySet[ApprovalRequest]:
    """The requests to lift this merchant's freeze still waiting in the approval queue (at most one)."""
    return ApprovalRequest.objects.filter(
        kind=PAYOUTS_UNFREEZE,
        status=ApprovalRequest.Status.PENDING,
        expires_at__gt=timezone.now(),
        payload__merchant_id=merchant_id,
    )


@transaction.atomic
def payouts_freeze(*, merchant_id: int, reason: str, actor: Any) -> Merchant:
    """Freezes the merchant's payouts now, or restates why they are frozen; a pending request to lift a freeze is
    cancelled."""
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
    withdrawn = list(unfreeze_requests_pending(merchant.pk).values_list("pk", flat=True))
    ApprovalRequest.objects.filter(pk__in=withdrawn, status=ApprovalRequest.Status.PENDING).update(
        status=ApprovalRequest.Status.CANCELLED, decided_at=timezone.now()
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
    if unfreeze_requests_pending(merchant.pk).exists():
        raise Conflict(
            _("A request to lift this freeze is already waiting for approval."),
            code="unfreeze_pending",
            param="merchant",
        )


def unfreeze_validate(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload of a request: the merchant and the freeze it would lift. Run when asked and again when approved
    (the request itself is then no longer pending): the merchant must still be frozen, for the same reason."""
    merchant = _locked_merchant(payload.get("merchant_id"))
    payouts_unfreeze_check(merchant=merchant)
    frozen_reason = payload.get("frozen_reason", merchant.frozen_reason)
    if frozen_reason != merchant.frozen_reason:
        raise Conflict(
            _("This merchant was frozen again since the request: ask again about the new freeze."),
            code="frozen_again",
            param="merchant",
        )
    return {"merchant_id": merchant.pk, "frozen_reason": merchant.frozen_reason}


def unfreeze_describe(payload: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        merchant_request_line(payload),
        (_("why it was frozen"), str(payload.get("frozen_reason") or "-")),
    ]


@transaction.atomic
def payouts_unfreeze_request(*, merchant_id: int, note: str, actor: Any) -> ApprovalRequest:
    """Asks for the freeze to be lifted, saying why (`note`); nothing changes until a second operator approves it in
    the approval queue (`core.approvals.approval_approve`)."""
    merchant = _locked_merchant(merchant_id)  # one request at a time per merchant: asking takes the merchant's lock
    if actor is None or not getattr(actor, "pk", None):
        raise PermissionDenied(_("An operator asks for a freeze to be lifted."), code="operator_required")
    require_operator_of(actor, merchant.sponsor_bank_id)
    if not actor.has_perm(UNFREEZE_PERMISSION):
        raise PermissionDenied(_("Your role may not ask for a freeze to be lifted."), code="unfreeze_not_allowed")
    payload = {"merchant_id": merchant.pk, "frozen_reason": merchant.frozen_reason}
    return approval_request(kind=PAYOUTS_UNFREEZE, payload=payload, reason=note, maker=actor)


def payouts_unfreeze_apply(payload: dict[str, Any], maker: AbstractBaseUser, checker: AbstractBaseUser) -> Merchant:
    """Lifts the freeze (the kind's `apply`, inside the approval's transaction, after `unfreeze_validate`)."""
    merchant = _locked_merchant(payload["merchant_id"])
    require_operator_of(checker, merchant.sponsor_bank_id)
    before = _freeze_state(merchant)
    merchant.payouts_frozen, merchant.frozen_reason = False, ""
    merchant.save(update_fields=["payouts_frozen", "frozen_reason"])
    audit_record(
        actor=checker,
        action="merchant.payouts_unfreeze",
        obj=merchant,
        before=before,
        after={**_freeze_state(merchant), "requested_by": maker.pk},
        bank_id=merchant.sponsor_bank_id,
    )
    return merchant


PAYOUTS_UNFREEZE_KIND = ApprovalKind(
    code=PAYOUTS_UNFREEZE,
    label=gettext_lazy("Lift a merchant's payout freeze"),
    permission=UNFREEZE_PERMISSION,
    validate=unfreeze_validate,
    bank_of=merchant_request_bank,
    apply=payouts_unfreeze_apply,
    describe=unfreeze_describe,
)
