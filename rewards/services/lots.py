"""A wallet's points as lots, and the ledger's day.

A credit to a wallet pays off the cardholder's points debt first; the rest forms a lot that expires by its programme's
policy (`lot_expiry`). A spend takes from the wallet's lots, soonest expiry first, recording what it took from each;
a wallet's lots always cover its posted balance. The ledger's day (`today`) is Shanghai's.
"""

from __future__ import annotations

import calendar
import datetime as dt

from django.utils import timezone
from django.utils.translation import gettext as _

from core.calendar import SHANGHAI
from core.errors import InsufficientFunds
from members.models import PointsProgram

from ..models import Account, Lot, LotMovement
from .posting import Posting


def _add_months(day: dt.date, months: int) -> dt.date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def lot_expiry(program: PointsProgram, earned_on: dt.date) -> dt.date:
    """The last day the points are valid, from the program's policy."""
    if program.expiry_policy == PointsProgram.ExpiryPolicy.MONTHS_AFTER_EARNING:
        return _add_months(earned_on, program.expiry_period)
    return dt.date(earned_on.year + program.expiry_period, 12, 31)


def today() -> dt.date:
    return timezone.now().astimezone(SHANGHAI).date()


def credit_wallet(
    posting: Posting, *, wallet: Account, debt: Account, program: PointsProgram, amount: int, earned_on: dt.date
) -> tuple[int, Lot | None]:
    """Credits `amount` points to the locked `wallet`: the locked points `debt` is paid off first, the rest lands in
    a new lot. Returns (paid, lot)."""
    paid = min(amount, -debt.posted)
    posting.leg(debt, paid)
    credited = amount - paid
    lot = None
    if credited:
        posting.leg(wallet, credited)
        lot = Lot.objects.create(
            account_id=wallet.pk,
            program=program,
            earned_by=posting.txn,
            earned_by_created_at=posting.txn.created_at,
            amount=credited,
            remaining=credited,
            earned_on=earned_on,
            expires_on=lot_expiry(program, earned_on),
        )
    return paid, lot


def open_lots(wallet: Account) -> list[Lot]:
    """The wallet's lots with points left, soonest expiry first (read under the wallet's lock)."""
    return list(
        Lot.objects.filter(account_id=wallet.pk, remaining__gt=0)
        .order_by("expires_on", "id")
        .only("id", "remaining", "expires_on")
    )


def consume_lots(
    posting: Posting, wallet: Account, amount: int, lots: list[Lot] | None = None
) -> list[tuple[int, int]]:
    """Takes `amount` from the wallet's lots, soonest expiry first; records and returns (lot id, taken)."""
    taken: list[tuple[int, int]] = []
    changed: list[Lot] = []
    need = amount
    for lot in open_lots(wallet) if lots is None else lots:
        if need == 0:
            break
        take = min(need, lot.remaining)
        lot.remaining -= take
        changed.append(lot)
        taken.append((lot.pk, take))
        need -= take
    if need:
        raise AssertionError(f"wallet {wallet.pk} lots do not cover its balance (short by {need})")
    for lot in changed:  # lots change only under their wallet's lock, so the new values are exact
        Lot.objects.filter(pk=lot.pk).update(remaining=lot.remaining)
    LotMovement.objects.bulk_create(
        LotMovement(transaction=posting.txn, transaction_created_at=posting.txn.created_at, lot_id=lot, amount=-n)
        for lot, n in taken
    )
    return taken


def spend(posting: Posting, wallet: Account, sink: Account, amount: int, lots: list[Lot]) -> None:
    """Spends `amount` from the locked `wallet` (its open `lots`, read under the lock) into `sink`."""
    if wallet.available < amount:
        raise InsufficientFunds(
            _("Not enough points: %(available)d available, %(needed)d needed.")
            % {"available": max(wallet.available, 0), "needed": amount},
            param="amount",
        )
    consume_lots(posting, wallet, amount, lots)
    posting.leg(wallet, -amount)
    posting.leg(sink, amount)
