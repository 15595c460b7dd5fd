"""The ledger's reads: balances across programs with their CNY value, keyset-paginated statements, points expiring."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Min, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce

from core.money import quantize
from members import selectors as members_selectors
from members.models import Cardholder, PointsProgram

from .models import Account, Entry, LedgerTransaction, Lot, OwnerKind, Purpose
from .services import today


@dataclass(frozen=True)
class ProgramBalance:
    program_id: int
    unit: str
    program_name: str
    bank_code: str
    posted: int
    held: int
    debt: int
    point_value_cny: Decimal
    expired: int = 0  # past their last valid day, not yet taken by the expiry job: not spendable

    @property
    def available(self) -> int:
        """What can be spent now: posted, less what is held, less the points past their date (which a spend would
        expire first; held points shield overdue lots, as in the expiry itself)."""
        free = self.posted - self.held
        return free - min(max(self.expired - self.held, 0), max(free, 0))

    @property
    def value_cny(self) -> Decimal:
        """What the available points are worth, to the fen."""
        return quantize(Decimal(self.available) * self.point_value_cny, 2)


def cardholder_balances(*, cardholder_id: int, on: dt.date | None = None) -> list[ProgramBalance]:
    """Every program the cardholder has points or a debt in (one query); value_cny is what the available points are
    worth at the program's point value. Points in lots past their last valid day (`on`: the business date) are
    counted out of what is available even before the daily job has expired them."""
    on = on or today()
    overdue = (
        Lot.objects.filter(account=OuterRef("pk"), remaining__gt=0, expires_on__lt=on)
        .values("account")
        .annotate(total=Sum("remaining"))
        .values("total")
    )
    accounts = (
        Account.objects.filter(
            owner_kind=OwnerKind.CARDHOLDER, owner_id=cardholder_id, purpose__in=[Purpose.POINTS, Purpose.DEBT]
        )
        .select_related("program__bank")
        .annotate(overdue=Coalesce(Subquery(overdue), 0))
        .order_by("unit", "purpose")
    )
    programs: dict[int, PointsProgram] = {}
    amounts: dict[int, list[int]] = {}  # program id → [posted, held, debt, expired]
    for account in accounts:
        program = account.program
        assert program is not None
        programs[program.pk] = program
        row = amounts.setdefault(program.pk, [0, 0, 0, 0])
        if account.purpose == Purpose.DEBT:
            row[2] = -account.posted
        else:
            row[0], row[1], row[3] = account.posted, account.held, int(account.overdue)  # type: ignore[attr-defined]
    return [
        ProgramBalance(
            program_id=program_id,
            unit=programs[program_id].unit_code,
            program_name=programs[program_id].name,
            bank_code=programs[program_id].bank.code,
            posted=posted,
            held=held,
            debt=debt,
            point_value_cny=programs[program_id].point_value_cny,
            expired=expired,
        )
        for program_id, (posted, held, debt, expired) in amounts.items()
    ]


def wallet_total_cny(balances: list[ProgramBalance]) -> Decimal:
    """What all the cardholder's available points are worth in CNY: each programme's available points × its point
    value, summed exactly and rounded once, to the fen, like each row's `value_cny`."""
    return quantize(sum((Decimal(row.available) * row.point_value_cny for row in balances), Decimal(0)), 2)


def exchange_programs(*, cardholder: Cardholder) -> list[PointsProgram]:
    """The active programmes the cardholder may exchange between: those of the banks they hold a card at and those
    they hold points in; no other (one query)."""
    wallets = Account.objects.filter(
        owner_kind=OwnerKind.CARDHOLDER, owner_id=cardholder.pk, purpose=Purpose.POINTS
    ).values("program_id")
    banks = members_selectors.cards_of(cardholder).values("bank_id")
    return list(
        PointsProgram.objects.filter(active=True)
        .filter(Q(pk__in=wallets) | Q(bank_id__in=banks))
        .select_related("bank")
        .order_by("bank__code", "unit_code")
    )


@dataclass(frozen=True)
class StatementLine:
    entry_id: int
    transaction_id: int
    kind: str
    amount: int
    balance_after: int
    created_at: dt.datetime

    @property
    def kind_label(self) -> str:
        return str(LedgerTransaction.Kind(self.kind).label)


@dataclass(frozen=True)
class StatementPage:
    lines: list[StatementLine]
    next_after: int | None


def account_statement(
    *, account_id: int, after_id: int | None = None, limit: int = 50, newest_first: bool = False
) -> StatementPage:
    """Entries oldest first (or newest first, as the portal shows them) with the running balance; keyset pagination on
    (account, id), so a page costs the same at any depth (one query). `after_id` is the previous page's `next_after`."""
    entries = Entry.objects.filter(account_id=account_id)
    if after_id is not None:
        entries = entries.filter(id__lt=after_id) if newest_first else entries.filter(id__gt=after_id)
    rows = list(
        entries.order_by("-id" if newest_first else "id").values_list(
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


def cardholder_wallet(*, cardholder_id: int, program_id: int) -> Account | None:
    """The cardholder's points account in one program, if they have one (a read: nothing is created)."""
    return (
        Account.objects.select_related("program__bank")
        .filter(owner_kind=OwnerKind.CARDHOLDER, owner_id=cardholder_id, purpose=Purpose.POINTS, program_id=program_id)
        .first()
    )
