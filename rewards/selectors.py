"""The ledger's reads: balances across programs with their CNY value, keyset-paginated statements, points expiring."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Min, Sum

from members.models import PointsProgram

from .models import Account, Entry, Lot, OwnerKind, Purpose


@dataclass(frozen=True)
class ProgramBalance:
    program_id: int
    unit: str
    program_name: str
    bank_code: str
    posted: int
    held: int
    debt: int
    value_cny: Decimal

    @property
    def available(self) -> int:
        return self.posted - self.held


def cardholder_balances(*, cardholder_id: int) -> list[ProgramBalance]:
    """Every program the cardholder has points or a debt in (one query); value_cny is what the available points are
    worth at the program's point value."""
    accounts = (
        Account.objects.filter(
            owner_kind=OwnerKind.CARDHOLDER, owner_id=cardholder_id, purpose__in=[Purpose.POINTS, Purpose.DEBT]
        )
        .select_related("program__bank")
        .order_by("unit", "purpose")
    )
    programs: dict[int, PointsProgram] = {}
    amounts: dict[int, list[int]] = {}  # program id → [posted, held, debt]
    for account in accounts:
        program = account.program
        assert program is not None
        programs[program.pk] = program
        row = amounts.setdefault(program.pk, [0, 0, 0])
        if account.purpose == Purpose.DEBT:
            row[2] = -account.posted
        else:
            row[0], row[1] = account.posted, account.held
    return [
        ProgramBalance(
            program_id=program_id,
            unit=programs[program_id].unit_code,
            program_name=programs[program_id].name,
            bank_code=programs[program_id].bank.code,
            posted=posted,
            held=held,
            debt=debt,
            value_cny=(Decimal(posted - held) * programs[program_id].point_value_cny).quantize(Decimal("0.01")),
        )
        for program_id, (posted, held, debt) in amounts.items()
    ]


@dataclass(frozen=True)
class StatementLine:
    entry_id: int
    transaction_id: int
    kind: str
    amount: int
    balance_after: int
    created_at: dt.datetime


@dataclass(frozen=True)
class StatementPage:
    lines: list[StatementLine]
    next_after: int | None


def account_statement(*, account_id: int, after_id: int | None = None, limit: int = 50) -> StatementPage:
    """Entries oldest first with the running balance; keyset pagination on (account, id), so a page costs the same
    at any depth (one query)."""
    entries = Entry.objects.filter(account_id=account_id)
    if after_id is not None:
        entries = entries.filter(id__gt=after_id)
    rows = list(
        entries.order_by("id").values_list(
            "id", "transaction_id", "transaction__kind", "amount", "balance_after", "transaction__created_at"
        )[: limit + 1]
    )
    lines = [StatementLine(*row) for row in rows[:limit]]
    return StatementPage(lines=lines, next_after=lines[-1].entry_id if len(rows) > limit else None)


@dataclass(frozen=True)
class Expiring:
    unit: str
    program_id: int
    points: int
    first_date: dt.date


def points_expiring(*, cardholder_id: int, within_days: int, on: dt.date) -> list[Expiring]:
    """Points in lots whose last valid day falls in the next `within_days` days, per program (one query)."""
    rows = (
        Lot.objects.filter(
            account__owner_kind=OwnerKind.CARDHOLDER,
            account__owner_id=cardholder_id,
            remaining__gt=0,
            expires_on__gte=on,
            expires_on__lte=on + dt.timedelta(days=within_days),
        )
        .values("program_id", "account__unit")
        .annotate(points=Sum("remaining"), first=Min("expires_on"))
        .order_by("account__unit")
    )
    return [Expiring(r["account__unit"], r["program_id"], int(r["points"]), r["first"]) for r in rows]
