"""The payments side of the rewards ledger: the only place payments posts points (through rewards' services)."""

from __future__ import annotations

from members.models import PointsProgram
from rewards import services as ledger
from rewards.models import LedgerTransaction

from .models import PaymentIntent


def program_for(intent: PaymentIntent) -> PointsProgram | None:
    """The issuer's active points programme (looked up once per payment object)."""
    if intent.issuer_id is None:
        return None
    if not hasattr(intent, "_issuer_program"):
        intent._issuer_program = PointsProgram.objects.filter(  # type: ignore[attr-defined]
            bank_id=intent.issuer_id, active=True
        ).first()
    program: PointsProgram | None = intent._issuer_program  # type: ignore[attr-defined]
    return program


def earn(*, intent: PaymentIntent, points: int, idempotency_key: str) -> bool:
    """Earns `points` in the issuer's programme; False when the issuer runs no programme (nothing is earned)."""
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
    original = LedgerTransaction.objects.filter(idempotency_key=earn_key).only("pk").first()
    if original is None:
        return
    ledger.transaction_reverse(
        transaction_id=original.pk, idempotency_key=idempotency_key, amount=points, reason=f"payment {intent.public_id}"
    )
