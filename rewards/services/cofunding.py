"""Operators' decisions on merchants' promotions: the co-funding bank approves or rejects its share of a campaign's
cost, and the sponsor bank (or the alliance) pauses a campaign, for instance on abuse.

Who may decide follows the rest of the platform (`operator_scope(...).can_write(bank)`): the operators of the bank
concerned, and alliance operators, who may act for any bank. Each decision locks the promotion's row, saves it (so
the engine's compiled rules, keyed by `updated_at`, are read again) and writes an audit row with the operator.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from core.audit import audit_record
from core.errors import Conflict, NotFound, PermissionDenied
from core.scoping import operator_scope

from ..models import Promotion
from .posting import Actor


def _locked(promotion_id: int) -> Promotion:
    # NO KEY UPDATE: payments reserving against the budget take key-share locks through their uses' foreign keys.
    promotion = (
        Promotion.objects.select_for_update(no_key=True, of=("self",))
        .select_related("merchant")
        .filter(pk=promotion_id)
        .first()
    )
    if promotion is None:
        raise NotFound(_("No such promotion."), param="promotion")
    return promotion


def _audit(operator: Actor, action: str, promotion: Promotion, before: dict[str, Any], bank_id: int) -> None:
    audit_record(
        actor=operator,
        action=action,
        obj=promotion,
        before=before,
        after={name: getattr(promotion, name) for name in before},
        object_banks={bank_id},
    )


def promotion_cofunding_decide(*, promotion_id: int, approve: bool, operator: Actor) -> Promotion:
    """Pending → approved (the engine applies the promotion from now on, the bank bearing its share) or rejected
    (it never applies). Only the co-funding bank's operators decide; the sponsor bank's do not."""
    with transaction.atomic():
        promotion = _locked(promotion_id)
        if promotion.cofunder_id is None:
            raise Conflict(_("This promotion is funded by the merchant alone."), code="not_cofunded")
        if operator is None or not operator_scope(operator).can_write(promotion.cofunder_id):
            raise PermissionDenied(_("Only an operator of the co-funding bank may decide this."))
        if promotion.cofunding != Promotion.Cofunding.PENDING:
            raise Conflict(
                _("The co-funding is already %(state)s.") % {"state": promotion.get_cofunding_display()},
                code="cofunding_decided",
            )
        before = {"cofunding": promotion.cofunding}
        promotion.cofunding = Promotion.Cofunding.APPROVED if approve else Promotion.Cofunding.REJECTED
        promotion.cofunding_decided_by = operator  # type: ignore[assignment]
        promotion.cofunding_decided_at = timezone.now()
        promotion.save(update_fields=["cofunding", "cofunding_decided_by", "cofunding_decided_at", "updated_at"])
        _audit(
            operator,
            "promotion.cofunding_approved" if approve else "promotion.cofunding_rejected",
            promotion,
            before,
            promotion.cofunder_id,
        )
    return promotion


def promotion_pause_by_operator(*, promotion_id: int, operator: Actor, reason: str = "") -> Promotion:
    """Active → paused, by the merchant's sponsor bank or the alliance: the engine stops applying it at once; uses
    already reserved run their course. The merchant may resume it through the API."""
    with transaction.atomic():
        promotion = _locked(promotion_id)
        sponsor = promotion.merchant.sponsor_bank_id
        if operator is None or not operator_scope(operator).can_write(sponsor):
            raise PermissionDenied(_("Only an operator of the merchant's sponsor bank may pause its promotions."))
        if promotion.status != Promotion.Status.ACTIVE:
            raise Conflict(
                _("The promotion is %(status)s.") % {"status": promotion.get_status_display()},
                code="promotion_state",
            )
        before = {"status": promotion.status}
        promotion.status = Promotion.Status.PAUSED
        promotion.save(update_fields=["status", "updated_at"])
        audit_record(
            actor=operator,
            action="promotion.paused",
            obj=promotion,
            before=before,
            after={"status": promotion.status},
            reason=reason,
            object_banks={sponsor},
        )
    return promotion
