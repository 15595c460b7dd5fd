"""Losses written off: a bank recognises a CNY amount it will not recover (a reconciliation difference two operators
agreed to write off) on its `loss` account, against its `suspense` account of unreconciled differences.

One posting, two legs, in ten-thousandths of a yuan: the bank's loss account is debited (−units) and its suspense
account credited (+units). Both are the bank's own: a write-off owes no other member anything, so it never touches
the clearing accounts that inter-bank clearing nets (a leg there would leave the day's obligations unbalanced).
Keyed like every posting: the same key again returns the first transaction and posts nothing.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _

from core.errors import ValidationFailed
from members.models import MemberBank

from ..models import LedgerTransaction, OwnerKind, Purpose
from .accounts import CNY, AccountRef
from .posting import Actor, Kind, begin, finish, keyed, request_hash, retry_on_conflict


def loss_ref(bank_id: int) -> AccountRef:
    """The bank's CNY loss account."""
    return AccountRef(OwnerKind.BANK, bank_id, Purpose.LOSS, CNY, 0, None, bank_id)


def suspense_ref(bank_id: int) -> AccountRef:
    """The bank's CNY account of unreconciled differences, which a write-off clears."""
    return AccountRef(OwnerKind.BANK, bank_id, Purpose.SUSPENSE, CNY, 0, None, bank_id)


@retry_on_conflict
def loss_post(
    *, bank: MemberBank, units: int, idempotency_key: str, actor: Actor, metadata: dict[str, Any]
) -> LedgerTransaction:
    """Writes `units` (ten-thousandths of CNY, positive) off at `bank`: its loss account −units, its suspense account
    +units."""
    if not isinstance(units, int) or isinstance(units, bool) or units <= 0:
        raise ValidationFailed(_("A write-off is a positive amount."), param="amount")
    digest = request_hash(op="loss", bank=bank.pk, units=units)
    loss, suspense = loss_ref(bank.pk), suspense_ref(bank.pk)

    def post() -> LedgerTransaction:
        posting = begin(
            kind=Kind.WRITE_OFF,
            key=idempotency_key,
            digest=digest,
            refs=[loss, suspense],
            actor=actor,
            metadata={"bank_id": bank.pk, "units": units, **metadata},
        )
        posting.leg(posting.account(loss), -units)
        posting.leg(posting.account(suspense), units)
        return finish(posting)

    return keyed(LedgerTransaction, idempotency_key, digest, post)
