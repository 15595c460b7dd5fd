"""The payments side of the rewards ledger: the only place payments posts points."""

from __future__ import annotations

from .models import PaymentIntent


def earn(*, intent: PaymentIntent, points: int, idempotency_key: str) -> None:
    if points <= 0:
        return
    # Wired to rewards.services when the ledger lands.


def reverse(*, intent: PaymentIntent, points: int, idempotency_key: str, earn_key: str) -> None:
    if points <= 0:
        return
