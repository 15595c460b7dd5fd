"""Redeeming points: spent from the wallet's lots, soonest expiry first, into the bank's redemption account.

The wallet's overdue lots expire first. Where the points pay for another party's benefit (`pays_to`), the issuing bank
owes that party their CNY value, posted in the same transaction.
"""

from __future__ import annotations

from typing import Any

from members.models import PointsProgram

from ..models import LedgerTransaction, OwnerKind, Purpose
from .accounts import bank_ref, wallet_ref
from .expiry import expire_overdue
from .lots import spend
from .obligations import Party, clearing_pair, obligation, points_value_units
from .posting import Actor, Kind, begin, finish, keyed, request_hash, require_positive, retry_on_conflict


@retry_on_conflict
def points_redeem(
    *,
    cardholder_id: int,
    program: PointsProgram,
    amount: int,
    idempotency_key: str,
    pays_to: Party | None = None,
    actor: Actor = None,
    metadata: dict[str, Any] | None = None,
) -> LedgerTransaction:
    """Spends points (soonest-expiring lots first). `pays_to`: another party whose benefit the points pay for is owed
    their CNY value by the issuing bank, in the same transaction."""
    require_positive(amount)
    digest = request_hash(
        op="redeem",
        cardholder=cardholder_id,
        program=program.pk,
        amount=amount,
        pays_to=pays_to.as_list() if pays_to else None,
        metadata=metadata or {},
    )
    meta = {**(metadata or {}), "cardholder_id": cardholder_id, "program_id": program.pk}
    issuer = Party(OwnerKind.BANK, program.bank_id)
    units = 0
    if pays_to is not None:
        units = points_value_units(amount, program)
        meta.update(pays_to=pays_to.as_list(), funded_units=units)
    wallet = wallet_ref(cardholder_id, program)
    sink = bank_ref(program, Purpose.REDEMPTION, cardholder_id)
    breakage = bank_ref(program, Purpose.BREAKAGE, cardholder_id)

    def post() -> LedgerTransaction:
        posting = begin(
            kind=Kind.SPEND,
            key=idempotency_key,
            digest=digest,
            refs=[wallet, sink, breakage, *clearing_pair(issuer, pays_to)],
            actor=actor,
            metadata=meta,
            points=amount,
        )
        locked = posting.account(wallet)
        lots = expire_overdue(locked, posting.account(breakage))
        spend(posting, locked, posting.account(sink), amount, lots)
        if pays_to is not None:
            obligation(posting, payer=issuer, payee=pays_to, units=units)
        return finish(posting)

    return keyed(LedgerTransaction, idempotency_key, digest, post)
