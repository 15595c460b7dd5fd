"""Manual adjustments, through the maker-checker mechanism (`core.approvals`, kind "rewards.points_adjustment"): one
operator requests, another of the programme's bank (or an alliance operator) approves in the approval queue, and the
adjustment posts in the same transaction; or they reject it.

A request names a cardholder who holds a card at the programme's bank (bound: active, frozen or closed) and a
non-zero amount of at most `POINTS_ADJUSTMENT_MAX` points either way; both are checked when it is requested and again
when it is approved. A credit forms a lot as an earn does; a debit spends lots as a redemption does. Every request and
decision is audited by the approval mechanism; the posted transaction carries its maker and checker.
"""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import models
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core.approvals import ApprovalKind, approval_request
from core.errors import NotFound, ValidationFailed
from core.models import ApprovalRequest
from core.text import id_or_none
from members.models import BindingStatus, Card, Cardholder, PointsProgram

from ..models import LedgerTransaction, Purpose
from .accounts import bank_ref, debt_ref, wallet_ref
from .expiry import expire_overdue
from .lots import credit_wallet, spend, today
from .posting import Kind, begin, finish, keyed, request_hash

POINTS_ADJUSTMENT = "rewards.points_adjustment"
M = TypeVar("M", bound=models.Model)
ADJUST_PERMISSION = "rewards.adjust_points"

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


def _row(model: type[M], value: Any) -> M | None:
    pk = id_or_none(str(value))
    return None if pk is None else model._default_manager.filter(pk=pk).first()


def _parse(payload: dict[str, Any]) -> tuple[int | None, PointsProgram, int]:
    program = _row(PointsProgram, payload.get("program_id"))
    if program is None:
        raise NotFound(_("No such points programme."), param="program")
    cardholder_id, amount = payload.get("cardholder_id"), payload.get("amount")
    adjustment_check(cardholder_id=cardholder_id, program=program, amount=amount)  # type: ignore[arg-type]
    return cardholder_id, program, amount  # type: ignore[return-value]


def adjustment_validate(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload of an adjustment: cardholder, programme, signed points, and the ledger key it will post under."""
    cardholder_id, program, amount = _parse(payload)
    return {
        "cardholder_id": cardholder_id,
        "program_id": program.pk,
        "amount": amount,
        "key": str(payload.get("key") or f"adjustment:{uuid.uuid4().hex}"),
    }


def adjustment_bank(payload: dict[str, Any]) -> int | None:
    return PointsProgram.objects.values_list("bank_id", flat=True).get(pk=payload["program_id"])


def adjustment_describe(payload: dict[str, Any]) -> list[tuple[str, str]]:
    program = _row(PointsProgram, payload.get("program_id"))
    cardholder = _row(Cardholder, payload.get("cardholder_id"))
    return [
        (_("cardholder"), str(cardholder) if cardholder is not None else f"#{payload.get('cardholder_id')}"),
        (_("program"), program.local_name if program is not None else f"#{payload.get('program_id')}"),
        (_("points"), f"{int(payload.get('amount', 0)):+,d}"),
    ]


def adjustment_request(
    *, cardholder_id: int, program: PointsProgram, amount: int, reason: str, requested_by: AbstractBaseUser
) -> ApprovalRequest:
    """Asks for an adjustment; it posts once a second operator approves it (`core.approvals.approval_approve`)."""
    payload = {"cardholder_id": cardholder_id, "program_id": program.pk, "amount": amount}
    return approval_request(kind=POINTS_ADJUSTMENT, payload=payload, reason=reason, maker=requested_by)


def adjustment_post(payload: dict[str, Any], maker: AbstractBaseUser, checker: AbstractBaseUser) -> LedgerTransaction:
    """Posts an approved adjustment (the kind's `apply`, inside the approval's transaction): a credit forms a lot, a
    debit spends lots (expiring overdue ones first). Checked again against today's cards and limits."""
    cardholder_id, program, amount = _parse(payload)
    assert cardholder_id is not None
    key = str(payload["key"])
    digest = request_hash(op="adjust", key=key, checker=checker.pk)

    def post() -> LedgerTransaction:
        wallet, debt = wallet_ref(cardholder_id, program), debt_ref(cardholder_id, program)
        issuance = bank_ref(program, Purpose.ISSUANCE, cardholder_id)
        breakage = bank_ref(program, Purpose.BREAKAGE, cardholder_id)
        posting = begin(
            kind=Kind.ADJUST,
            key=key,
            digest=digest,
            refs=[wallet, debt, issuance, *([breakage] if amount < 0 else [])],
            actor=checker,
            metadata={
                "cardholder_id": cardholder_id,
                "program_id": program.pk,
                "direction": 1 if amount > 0 else -1,
                "requested_by": maker.pk,
                "approved_by": checker.pk,
            },
            points=abs(amount),
        )
        locked_wallet = posting.account(wallet)
        if amount > 0:
            posting.leg(posting.account(issuance), -amount)
            credit_wallet(
                posting,
                wallet=locked_wallet,
                debt=posting.account(debt),
                program=program,
                amount=amount,
                earned_on=today(),
            )
        else:
            lots = expire_overdue(locked_wallet, posting.account(breakage))
            spend(posting, locked_wallet, posting.account(issuance), -amount, lots)
        return finish(posting)

    return keyed(LedgerTransaction, key, digest, post)


POINTS_ADJUSTMENT_KIND = ApprovalKind(
    code=POINTS_ADJUSTMENT,
    label=gettext_lazy("points adjustment"),
    permission=ADJUST_PERMISSION,
    validate=adjustment_validate,
    bank_of=adjustment_bank,
    apply=adjustment_post,  # type: ignore[arg-type]
    describe=adjustment_describe,
)
