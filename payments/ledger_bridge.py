"""The payments side of the rewards ledger: the only place payments posts points (through rewards' services)."""

from __future__ import annotations

from typing import Any

from members.models import PointsProgram
from members.selectors import active_program
from rewards import services as ledger
from rewards.models import LedgerTransaction

from .models import PaymentIntent


def program_for(intent: PaymentIntent) -> PointsProgram | None:
    """The issuer's active points programme."""
    if intent.issuer_id is None:
        return None
    return active_program(intent.issuer_id)


def earn(*, intent: PaymentIntent, points: int, idempotency_key: str) -> bool:
    """Earns `points` in the issuer's programme; False when it earns nothing (no points, or no programme at the
    issuer)."""
    program = program_for(intent)
    if points <= 0 or program is None:
        return False
    ledger.points_earn(
        cardholder_id=intent.cardholder_id,
        program=program,
        amount=points,
        idempotency_key=idempotency_key,
        source=ledger.EarnSource.PAYMENT,
        metadata={"payment": intent.public_id},
    )
    return True


def reverse(*, intent: PaymentIntent, points: int, idempotency_key: str, earn_key: str) -> None:
    """Reverses `points` of the payment's earn; spent points become a points debt (never blocks the refund)."""
    if points <= 0:
        return
    original = LedgerTransaction.objects.keyed(earn_key)  # by its key's row, then in its month
    if original is None:
        return
    ledger.transaction_reverse(
        transaction_id=original.pk,
        transaction_created_at=original.created_at,
        idempotency_key=idempotency_key,
        amount=points,
        reason=f"payment {intent.public_id}",
    )


# --- points part-payment (积分抵现) -------------------------------------------------------------------------------


def spend_hold(*, intent: PaymentIntent, program: PointsProgram, points: int, expires_at: Any) -> int:
    """Reserves the points a payment pays with; raises InsufficientFunds when the wallet lacks them."""
    hold = ledger.hold_create(
        cardholder_id=intent.cardholder_id,
        program=program,
        amount=points,
        idempotency_key=f"payment:{intent.public_id}:points-hold",
        expires_at=expires_at,
        metadata={"payment": intent.public_id},
    )
    return hold.pk


def spend_post(*, intent: PaymentIntent) -> LedgerTransaction | None:
    """Spends the held points (on capture); returns the ledger transaction."""
    if intent.points_hold_id is None:
        return None
    points = intent.points_used
    if 0 < intent.amount_captured < intent.amount:
        # A partial capture spends the same share of the points (floor), and the rest goes back to the cardholder.
        points = intent.points_used * intent.amount_captured // intent.amount
    if points <= 0:
        ledger.hold_void(hold_id=intent.points_hold_id)
        return None
    return ledger.hold_post(
        hold_id=intent.points_hold_id, idempotency_key=f"payment:{intent.public_id}:points-post", amount=points
    )


def spend_void(*, intent: PaymentIntent) -> None:
    """Gives the held points back (the payment failed or its authorisation was voided); idempotent."""
    if intent.points_hold_id is not None and intent.points_spend_id is None:
        ledger.hold_void(hold_id=intent.points_hold_id)


def spend_return(*, intent: PaymentIntent, refunded_total: int, captured_total: int, cause: str) -> None:
    """Returns spent points with cash refunds, cumulatively: returned so far = floor(points × refunded / captured)."""
    if intent.points_spend_id is None:
        return
    ledger.transaction_reverse(
        transaction_id=intent.points_spend_id,
        transaction_created_at=intent.points_spend_created_at,
        idempotency_key=f"payment:{intent.public_id}:points-return:{cause}",
        refunded_total=refunded_total,
        captured_total=captured_total,
        reason=f"payment {intent.public_id}",
    )
