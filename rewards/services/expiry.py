"""Expiry: the points of a lot past its last valid day go to the programme's breakage account.

The daily job (`lots_expire`) posts one transaction per wallet; points that are held stay until their hold resolves.
A spend or a hold first expires its wallet's overdue lots in a posting of their own (`expire_overdue`), so points past
their day are never spendable, even before the job has run.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from django.db import transaction
from django.db.models import F

from members.models import PointsProgram

from ..models import Account, LedgerTransaction, Lot, LotMovement, Purpose
from .accounts import bank_points_account
from .lots import today
from .posting import Kind, begin, finish, request_hash, retry_on_conflict


def lots_expire(*, on: dt.date | None = None) -> dict[str, int]:
    """Expires every lot whose last valid day is before `on`: one transaction per cardholder and program. Points that
    are held stay until the hold resolves (the next run takes them)."""
    on = on or today()
    wallet_ids = list(
        Lot.objects.filter(remaining__gt=0, expires_on__lt=on)
        .values_list("account_id", flat=True)
        .distinct()
        .order_by("account_id")
    )
    counts = {"accounts": 0, "points": 0}
    for wallet_id in wallet_ids:
        expired = _expire_wallet(wallet_id, on)
        if expired:
            counts["accounts"] += 1
            counts["points"] += expired
    return counts


def _overdue_lots(wallet_id: int, on: dt.date) -> list[tuple[int, int]]:
    return list(
        Lot.objects.filter(account_id=wallet_id, remaining__gt=0, expires_on__lt=on)
        .order_by("id")
        .values_list("id", "remaining")
    )


def expire_overdue(wallet: Account) -> None:
    """Points whose lot is past its last valid day are not spendable, even before the daily job has run: a spend
    (or a hold) first expires the wallet's overdue lots, in a posting of their own, exactly as the job would."""
    if _overdue_lots(wallet.pk, today()):
        _expire_wallet(wallet.pk, today())


@retry_on_conflict
def _expire_wallet(wallet_id: int, on: dt.date) -> int:
    with transaction.atomic():
        overdue = _overdue_lots(wallet_id, on)
        if not overdue:
            return 0
        wallet = Account.objects.get(pk=wallet_id)
        program = PointsProgram.objects.get(pk=wallet.program_id or 0)
        breakage = bank_points_account(program, Purpose.BREAKAGE, wallet.owner_id)
        # The key names the lots as they stand, so a second expiry on the same day (a spend's, then the job's, or
        # points released by a hold) is a new posting, while two runs over the same lots post once.
        lots_digest = hashlib.sha256(repr(overdue).encode()).hexdigest()[:16]
        key = f"expire:{wallet_id}:{on.isoformat()}:{lots_digest}"
        posting = begin(
            kind=Kind.EXPIRE,
            key=key,
            digest=request_hash(op="expire", wallet=wallet_id, on=on, lots=overdue),
            accounts=[wallet, breakage],
            actor=None,
            metadata={"cardholder_id": wallet.owner_id, "program_id": program.pk, "on": on.isoformat()},
        )
        if isinstance(posting, LedgerTransaction):
            return 0
        # Held points are taken from the soonest-expiring lots when their hold posts, so they are the overdue ones:
        # what is held stays until the hold resolves (the next run takes it), and valid lots are never touched.
        locked = posting.acc(wallet)
        budget = min(max(sum(remaining for _lot, remaining in overdue) - locked.held, 0), max(locked.available, 0))
        movements: list[LotMovement] = []
        total = 0
        lots = Lot.objects.filter(account_id=wallet_id, remaining__gt=0, expires_on__lt=on).order_by("expires_on", "id")
        for lot in lots:
            take = min(lot.remaining, budget - total)
            if take <= 0:
                break
            Lot.objects.filter(pk=lot.pk).update(remaining=F("remaining") - take)
            movements.append(LotMovement(transaction=posting.txn, lot=lot, amount=-take))
            total += take
        if total == 0:
            transaction.set_rollback(True)
            return 0
        LotMovement.objects.bulk_create(movements)
        posting.txn.points = total
        posting.txn.save(update_fields=["points"])
        posting.leg(wallet, -total)
        posting.leg(breakage, total)
        finish(posting)
        return total
