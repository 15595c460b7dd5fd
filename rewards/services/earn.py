"""Earning points: the programme's issuance account pays; a points debt is paid off first, the rest forms a lot.

A funder other than the issuing bank (`funded_by`: a merchant's multiplier, another bank's campaign) owes the issuing
bank the points' CNY value, posted in the same transaction.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils.translation import gettext as _

from core.errors import ValidationFailed
from members.models import PointsProgram

from ..models import LedgerTransaction, OwnerKind, Purpose
from .accounts import bank_ref, debt_ref, wallet_ref
from .lots import credit_wallet, today
from .obligations import Party, clearing_pair, obligation, points_value_units
from .posting import Actor, Kind, begin, finish, keyed, request_hash, require_positive, retry_on_conflict


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
    meta = _earn_meta(metadata, cardholder_id, program, source)
    issuer = Party(OwnerKind.BANK, program.bank_id)
    funded_units = 0
    if funded_by is not None:
        funded_units = points_value_units(amount, program)
        meta.update(funded_by=funded_by.as_list(), funded_units=funded_units)
    wallet, debt = wallet_ref(cardholder_id, program), debt_ref(cardholder_id, program)
    issuance = bank_ref(program, Purpose.ISSUANCE, cardholder_id)

    def post() -> LedgerTransaction:
        posting = begin(
            kind=Kind.EARN,
            key=idempotency_key,
            digest=digest,
            refs=[wallet, debt, issuance, *clearing_pair(funded_by, issuer)],
            actor=actor,
            metadata=meta,
            points=amount,
        )
        posting.leg(posting.account(issuance), -amount)
        credit_wallet(
            posting,
            wallet=posting.account(wallet),
            debt=posting.account(debt),
            program=program,
            amount=amount,
            earned_on=earned_on,
        )
        if funded_by is not None:
            obligation(posting, payer=funded_by, payee=issuer, units=funded_units)
        return finish(posting)

    return keyed(LedgerTransaction, idempotency_key, digest, post)
