"""Redeeming points: spent from the wallet's lots, soonest expiry first, into the bank's redemption account.

The wallet's overdue lots expire first. Where the points pay for another party's benefit (`pays_to`), the issuing bank
owes that party their CNY value, posted in the same transaction.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from members.models import PointsProgram

from ..models import LedgerTransaction, OwnerKind, Purpose
from .accounts import bank_points_account, wallet_account
from .expiry import expire_overdue
from .lots import spend
from .obligations import Party, clearing_pair, obligation, points_value_units
from .posting import Actor, Kind, begin, finish, request_hash, require_positive, retry_on_conflict


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
    return _redeem_atomic(cardholder_id, program, amount, idempotency_key, digest, pays_to, actor, metadata)


@transaction.atomic
def _redeem_atomic(
    cardholder_id: int,
    program: PointsProgram,
    amount: int,
    key: str,
    digest: str,
    pays_to: Party | None,
    actor: Actor,
    metadata: dict[str, Any] | None,
) -> LedgerTransaction:
    wallet = wallet_account(cardholder_id, program)
    expire_overdue(wallet)
    sink = bank_points_account(program, Purpose.REDEMPTION, cardholder_id)
    meta = {**(metadata or {}), "cardholder_id": cardholder_id, "program_id": program.pk}
    units = 0
    if pays_to is not None:
        units = points_value_units(amount, program)
        meta.update(pays_to=pays_to.as_list(), funded_units=units)
    posting = begin(
        kind=Kind.SPEND,
        key=key,
        digest=digest,
        accounts=[wallet, sink, *clearing_pair(Party(OwnerKind.BANK, program.bank_id), pays_to)],
        actor=actor,
        metadata=meta,
        points=amount,
    )
    if isinstance(posting, LedgerTransaction):
        return posting
    spend(posting, wallet, sink, amount)
    if pays_to is not None:
        obligation(posting, payer=Party(OwnerKind.BANK, program.bank_id), payee=pays_to, units=units)
    return finish(posting)
