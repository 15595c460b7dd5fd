"""Earning points: the programme's issuance account pays; a points debt is paid off first, the rest forms a lot.

A funder other than the issuing bank (`funded_by`: a merchant's multiplier, another bank's campaign) owes the issuing
bank the points' CNY value, posted in the same transaction.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction
from django.utils.translation import gettext as _

from core.errors import ValidationFailed
from members.models import PointsProgram

from ..models import LedgerTransaction, OwnerKind, Purpose
from .accounts import bank_points_account, debt_account, wallet_account
from .lots import credit_wallet, today
from .obligations import Party, clearing_pair, obligation, points_value_units
from .posting import Actor, Kind, begin, finish, request_hash, require_positive, retry_on_conflict


def _earn_digest(
    cardholder_id: int,
    program: PointsProgram,
    amount: int,
    source: str,
    funded_by: Party | None,
    earned_on: dt.date,
    metadata: dict[str, Any],
) -> str:
    """Checks an earn's amount and source; the hash its idempotency key is bound to."""
    require_positive(amount)
    if source not in EarnSource.ALL:
        raise ValidationFailed(_("Unknown earning source."), param="source")
    return request_hash(
        op="earn",
        cardholder=cardholder_id,
        program=program.pk,
        amount=amount,
        source=source,
        funded_by=funded_by.as_list() if funded_by else None,
        earned_on=earned_on,
        metadata=metadata,
    )


def _earn_meta(
    metadata: dict[str, Any] | None, cardholder_id: int, program: PointsProgram, source: str
) -> dict[str, Any]:
    """The metadata an earn's ledger transaction records: the caller's, with whose points, which programme, why."""
    return {**(metadata or {}), "cardholder_id": cardholder_id, "program_id": program.pk, "source": source}


class EarnSource:
    PAYMENT = "payment"
    PROMOTION = "promotion"
    CAMPAIGN = "campaign"
    OPERATOR = "operator"
    ALL = (PAYMENT, PROMOTION, CAMPAIGN, OPERATOR)


@retry_on_conflict
def points_earn(
    *,
    cardholder_id: int,
    program: PointsProgram,
    amount: int,
    idempotency_key: str,
    source: str = EarnSource.PAYMENT,
    funded_by: Party | None = None,
    earned_on: dt.date | None = None,
    actor: Actor = None,
    metadata: dict[str, Any] | None = None,
) -> LedgerTransaction:
    """Credits points to a cardholder in `program`'s unit (debt first, then a new lot).

    `funded_by` (a merchant's multiplier, another bank's campaign) owes the issuing bank the points' CNY value,
    posted in the same transaction.
    """
    earned_on = earned_on or today()
    digest = _earn_digest(cardholder_id, program, amount, source, funded_by, earned_on, metadata or {})
    return _earn_atomic(
        cardholder_id, program, amount, idempotency_key, digest, source, funded_by, earned_on, actor, metadata
    )


@transaction.atomic
def _earn_atomic(
    cardholder_id: int,
    program: PointsProgram,
    amount: int,
    key: str,
    digest: str,
    source: str,
    funded_by: Party | None,
    earned_on: dt.date,
    actor: Actor,
    metadata: dict[str, Any] | None,
) -> LedgerTransaction:
    wallet, debt = wallet_account(cardholder_id, program), debt_account(cardholder_id, program)
    issuance = bank_points_account(program, Purpose.ISSUANCE, cardholder_id)
    meta = _earn_meta(metadata, cardholder_id, program, source)
    funded_units = 0
    if funded_by is not None:
        funded_units = points_value_units(amount, program)
        meta.update(funded_by=funded_by.as_list(), funded_units=funded_units)
    posting = begin(
        kind=Kind.EARN,
        key=key,
        digest=digest,
        accounts=[wallet, debt, issuance, *clearing_pair(funded_by, Party(OwnerKind.BANK, program.bank_id))],
        actor=actor,
        metadata=meta,
        points=amount,
    )
    if isinstance(posting, LedgerTransaction):
        return posting
    posting.leg(issuance, -amount)
    credit_wallet(posting, wallet=wallet, debt=debt, program=program, amount=amount, earned_on=earned_on)
    if funded_by is not None:
        obligation(posting, payer=funded_by, payee=Party(OwnerKind.BANK, program.bank_id), units=funded_units)
    return finish(posting)
