"""Payments: reads."""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

from django.contrib.postgres.aggregates import ArrayAgg
from django.db import connections, router, transaction
from django.db.models import Aggregate, Count, F, IntegerField, Q, QuerySet, Sum, Value
from django.utils import timezone
from django.utils.translation import gettext as _
from psycopg2 import sql

from core.calendar import SHANGHAI
from core.money import MINOR_UNIT_EXPONENT, format_minor
from core.partitions import archive_tables, archive_tables_of, archived_before, with_archives
from members.models import BindingStatus, Cardholder, LinkedAccount

from .connectors import get_connector
from .connectors.base import AccountBalance, Outcome
from .health import BreakerState, health_store
from .models import (
    Agreement,
    Channel,
    Dispute,
    PaymentAttempt,
    PaymentIntent,
    Refund,
    SettlementBatch,
    SettlementLine,
    SplitInstruction,
)
from .routing import load_config
from .spending import spent_between

# The creation times a range of business dates' (or of capture times') payments and refunds can have, for other apps'
# reads by business date or capture time (the revenue share's metrics, segments).
from .windows import payments_created_for as payments_created_for
from .windows import payments_created_for_captures as payments_created_for_captures
from .windows import refunds_created_for as refunds_created_for

logger = logging.getLogger(__name__)
OK_STATES = (PaymentAttempt.Status.AUTHORIZED, PaymentAttempt.Status.CAPTURED, PaymentAttempt.Status.VOIDED)
CHANNEL_FAULTS = (PaymentAttempt.Status.FAILED, PaymentAttempt.Status.UNKNOWN, PaymentAttempt.Status.REVERSED)


@dataclass(frozen=True)
class ChannelFigures:
    code: str
    volume: int
    approved: int
    declined: int
    channel_faults: int
    success_rate: float | None
    latency_p50_ms: int | None
    latency_p95_ms: int | None
    latency_p99_ms: int | None
    breaker: str


class _Percentile(Aggregate):
    """PostgreSQL's `percentile_disc(fraction) WITHIN GROUP (ORDER BY expression)`: the first value at or above the
    fraction of the ordered values."""

    function = "percentile_disc"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = IntegerField()

    def __init__(self, expression: str, fraction: float) -> None:
        super().__init__(expression, fraction=float(fraction))


def channel_figures(*, since: timedelta = timedelta(hours=24)) -> list[ChannelFigures]:
    """Volume, success rate, latency percentiles and breaker state per channel, aggregated by the database over the
    attempts of the window (found through the attempts' index on when they were made)."""
    counted = (
        PaymentAttempt.objects.filter(created_at__gte=timezone.now() - since)
        .values("channel_id")
        .annotate(
            volume=Count("pk"),
            approved=Count("pk", filter=Q(status__in=OK_STATES)),
            declined=Count("pk", filter=Q(status=PaymentAttempt.Status.DECLINED)),
            faults=Count("pk", filter=Q(status__in=CHANNEL_FAULTS)),
            p50=_Percentile("latency_ms", 0.50),
            p95=_Percentile("latency_ms", 0.95),
            p99=_Percentile("latency_ms", 0.99),
        )
    )
    by_channel = {row["channel_id"]: row for row in counted}
    config = load_config()
    store = health_store()
    figures = []
    for channel in Channel.objects.order_by("code"):
        row = by_channel.get(channel.pk)
        volume = row["volume"] if row else 0
        info = config.channels.get(channel.pk)
        breaker = store.state(channel.code, info.breaker) if info else BreakerState.CLOSED
        figures.append(
            ChannelFigures(
                code=channel.code,
                volume=volume,
                approved=row["approved"] if row else 0,
                declined=row["declined"] if row else 0,
                channel_faults=row["faults"] if row else 0,
                success_rate=round(row["approved"] / volume, 4) if row and volume else None,
                latency_p50_ms=row["p50"] if row else None,
                latency_p95_ms=row["p95"] if row else None,
                latency_p99_ms=row["p99"] if row else None,
                breaker=str(breaker),
            )
        )
    return figures


@dataclass(frozen=True)
class LinkedBalance:
    account: LinkedAccount
    currency: str = ""
    balance: int | None = None
    available: int | None = None
    error: str = ""

    @property
    def available_display(self) -> str:
        return format_minor(self.available, self.currency) if self.available is not None else ""

    @property
    def balance_display(self) -> str:
        return format_minor(self.balance, self.currency) if self.balance is not None else ""


def linked_balances(*, cardholder: Cardholder) -> list[LinkedBalance]:
    """The cardholder's active linked accounts with their live balance, asked of the channel that keeps each one.

    A channel that does not answer gives that row an error; the others still show."""
    from .methods import ACCOUNT_CHANNEL_KIND

    rows = []
    accounts = LinkedAccount.objects.filter(cardholder=cardholder, status=BindingStatus.ACTIVE).select_related("bank")
    for account in accounts:
        channel = (
            Channel.objects.filter(kind=ACCOUNT_CHANNEL_KIND[account.kind], acquirer=account.bank_id, enabled=True)
            .order_by("id")
            .first()
        )
        if channel is None:
            rows.append(LinkedBalance(account, error=str(_("No channel reaches this account yet."))))
            continue
        try:
            answer = get_connector(channel.connector).account_inquire(account.reference)
        except Exception:
            logger.warning("balance inquiry failed for account %s", account.pk, exc_info=True)
            answer = AccountBalance(Outcome.UNKNOWN)
        if answer.outcome == Outcome.APPROVED:
            rows.append(LinkedBalance(account, answer.currency, answer.balance, answer.available))
        elif answer.outcome == Outcome.DECLINED:
            rows.append(LinkedBalance(account, error=str(_("The bank does not know this account."))))
        else:
            rows.append(
                LinkedBalance(
                    account, error=str(_("%(bank)s is not answering; try again later.") % {"bank": account.bank})
                )
            )
    return rows


def agreements_of(*, cardholder: Cardholder) -> list[Agreement]:
    return list(
        Agreement.objects.filter(cardholder=cardholder)
        .select_related("merchant", "card__product", "linked_account__bank")
        .order_by("revoked_at", "-id")
    )


def payout_channel(*, sponsor_bank_id: int, currency: str, livemode: bool) -> Channel | None:
    """The sponsor bank's licensed channel its merchants' payouts go through in this currency: enabled, flagged for
    payouts, a sandbox one for test mode and never for live (the first by id when the bank flags several)."""
    return (
        Channel.objects.filter(
            acquirer_id=sponsor_bank_id,
            payouts=True,
            enabled=True,
            sandbox=not livemode,
            currencies__contains=[currency],
        )
        .order_by("pk")
        .first()
    )


# --- settlements ----------------------------------------------------------------------------------------------------


def hundredths_text(value: int) -> str:
    """Hundredths of a minor unit as minor units with two decimals, exactly: 3625 → "36.25", -5 → "-0.05"."""
    return f"{Decimal(value).scaleb(-2):.2f}"


LINE_PREFIX = "stll_"
LINE_COLUMNS = (
    "id", "kind", "payment", "refund", "dispute", "source", "amount", "fee", "promotion_charge", "cofunding_credit",
)  # fmt: skip


@dataclass(frozen=True)
class SettlementLineRow:
    """A line as merchants and operators read it. `id` is its number within the batch (in the order the lines were
    written, ascending, with gaps), so it says nothing about other batches; `fee` is minor units with two decimals."""

    id: str
    pk: int
    kind: str
    payment: str | None
    refund: str | None
    dispute: str | None
    source: str | None
    amount: int
    fee: str
    promotion_charge: int
    cofunding_credit: int
    fee_hundredths: int

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "object": "settlement_line", **{name: getattr(self, name) for name in LINE_COLUMNS[1:]}}

    def as_csv(self) -> list[Any]:
        return [getattr(self, name) for name in LINE_COLUMNS]


# What a batch's lines are read with: the lines' and the refunds' columns named, since an archive table keeps the
# columns its month had (a refund's month may be archived once its lines' is).
_LINE_SOURCE_COLUMNS = (
    "id", "batch_id", "kind", "payment_id", "refund_id", "dispute_id", "source_id", "amount", "fee", "promotion_charge",
    "cofunding_credit",
)  # fmt: skip
_REFUND_SOURCE_COLUMNS = ("id", "public_id")
_PAYMENT_SOURCE_COLUMNS = ("id", "public_id")

# A batch's lines from line `from_pk` on, in the order they were written, with the public ids of what is behind
# them; keyset on each month's (batch, id) index, an archived month's too.
_SQL_BATCH_LINES = """
    SELECT l.id, l.kind, p.public_id, r.public_id, d.public_id, s.public_id, l.amount, l.fee, l.promotion_charge,
           l.cofunding_credit
    FROM {lines} l
    LEFT OUTER JOIN {payments} p ON l.payment_id = p.id
    LEFT OUTER JOIN {refunds} r ON l.refund_id = r.id
    LEFT OUTER JOIN {disputes} d ON l.dispute_id = d.id
    LEFT OUTER JOIN {batches} s ON l.source_id = s.id
    WHERE l.batch_id = %(batch)s AND l.id >= %(from_pk)s
    ORDER BY l.id
    LIMIT %(limit)s
"""
_SQL_FIRST_LINE = "SELECT l.id FROM {lines} l WHERE l.batch_id = %(batch)s ORDER BY l.id LIMIT 1"


@dataclass(frozen=True)
class _BatchLines:
    """Where a batch's lines are read: the lines, the payments and the refunds, each with its archived months
    (docs/scaling.md, "Settlement lines"), so that a batch keeps every line whatever the age of its payments."""

    using: str  # the database the reads go to (the replica, for a view that reads it)
    lines: sql.Composable
    payments: sql.Composable
    refunds: sql.Composable

    @classmethod
    def now(cls) -> _BatchLines:
        tables = {
            SettlementLine._meta.db_table: _LINE_SOURCE_COLUMNS,
            PaymentIntent._meta.db_table: _PAYMENT_SOURCE_COLUMNS,
            Refund._meta.db_table: _REFUND_SOURCE_COLUMNS,
        }
        archived = archive_tables_of(tables)  # one query
        lines, payments, refunds = (
            sql.SQL(with_archives(table, columns, archived[table])) for table, columns in tables.items()
        )
        return cls(router.db_for_read(SettlementLine), lines, payments, refunds)

    def first_pk(self, batch_id: int) -> int:
        """The id of the batch's first line (0 for a batch without lines): line numbers count from it."""
        with connections[self.using].cursor() as cursor:
            cursor.execute(sql.SQL(_SQL_FIRST_LINE).format(lines=self.lines), {"batch": batch_id})
            row = cursor.fetchone()
        return row[0] if row else 0

    def rows(self, batch_id: int, from_pk: int, limit: int) -> list[tuple[Any, ...]]:
        """Up to `limit` of the batch's lines whose id is `from_pk` or more, in order."""
        query = sql.SQL(_SQL_BATCH_LINES).format(
            lines=self.lines,
            payments=self.payments,
            refunds=self.refunds,
            disputes=sql.Identifier(Dispute._meta.db_table),
            batches=sql.Identifier(SettlementBatch._meta.db_table),
        )
        with connections[self.using].cursor() as cursor:
            cursor.execute(query, {"batch": batch_id, "from_pk": from_pk, "limit": limit})
            return list(cursor.fetchall())


def _line_row(first_pk: int, values: tuple[Any, ...]) -> SettlementLineRow:
    pk, kind, payment, refund, dispute, source, amount, fee, promotion_charge, cofunding_credit = values
    return SettlementLineRow(
        f"{LINE_PREFIX}{pk - first_pk + 1}", pk, kind, payment, refund, dispute, source, amount, hundredths_text(fee),
        promotion_charge, cofunding_credit, fee,
    )  # fmt: skip


def line_position(line_id: str) -> int | None:
    """The number in a line's id (stll_17 → 17), or None for a string that is not one."""
    number = line_id.removeprefix(LINE_PREFIX)
    if line_id == number or not number.isascii() or not number.isdigit() or len(number) > 12:
        return None
    return int(number)


@dataclass(frozen=True)
class SettlementLinesPage:
    lines: list[SettlementLineRow]
    has_more: bool


def settlement_lines_page(*, batch_id: int, after: int | None, limit: int) -> SettlementLinesPage:
    """A page of a batch's lines in the order they were written: those after line number `after` (keyset on the
    lines' (batch, id) index, so any page costs the same), archived months' lines too; three queries (the archived
    months, the first line's id, the page)."""
    source = _BatchLines.now()
    first_pk = source.first_pk(batch_id)
    rows = source.rows(batch_id, first_pk + after if after is not None else 0, limit + 1)
    return SettlementLinesPage([_line_row(first_pk, row) for row in rows[:limit]], has_more=len(rows) > limit)


class _Echo:
    """A file whose `write` hands back what it is given, for csv.writer to format one row at a time."""

    def write(self, value: str) -> str:
        return value


def settlement_lines_csv(*, batch_id: int, chunk_size: int = 2000) -> Iterator[str]:
    """Every line of a batch as CSV text, a header row first, archived months' lines too, read as the text is sent a
    keyset page of `chunk_size` lines at a time: a batch of any size streams in constant memory. The pages are read
    in one transaction (on the primary, its locks keep the job from archiving a month between two pages)."""
    writer = csv.writer(_Echo())
    yield writer.writerow(LINE_COLUMNS)
    source = _BatchLines.now()
    with transaction.atomic(using=source.using):
        first_pk = source.first_pk(batch_id)
        from_pk = 0
        while True:
            rows = source.rows(batch_id, from_pk, chunk_size)
            for values in rows:
                yield writer.writerow(_line_row(first_pk, values).as_csv())
            if len(rows) < chunk_size:
                return
            from_pk = rows[-1][0] + 1


def settlement_splits(*, batch_id: int) -> list[dict[str, Any]]:
    """What the acquirer of record pays each party out of a batch (分账), summed per party, bank and acquirer;
    amounts in minor units with two decimals."""
    rows = (
        SplitInstruction.objects.filter(batch_id=batch_id)
        .values("party", "bank__code", "acquirer__code")
        .annotate(total=Sum("amount"))
        .order_by("party", "bank__code", "acquirer__code")
    )
    return [
        {
            "party": row["party"],
            "bank": row["bank__code"],
            "acquirer": row["acquirer__code"],
            "amount": hundredths_text(row["total"]),
        }
        for row in rows
    ]


@dataclass(frozen=True)
class SettlementDayFigures:
    """One sponsor bank's batches of one currency and status settling on a day, summed."""

    bank_id: int
    bank: str
    currency: str
    status: str
    batches: int
    payments: int
    gross: int
    refunds: int
    fees: int
    promotion_charges: int
    cofunding_credits: int
    reserve_held: int
    reserve_released: int
    carried_out: int
    net: int
    hold_reasons: list[str]

    AMOUNTS: ClassVar[tuple[str, ...]] = (
        "gross", "refunds", "fees", "promotion_charges", "cofunding_credits", "reserve_held", "reserve_released",
        "carried_out", "net",
    )  # fmt: skip


def settlement_day_report(
    *, batches: QuerySet[SettlementBatch], settle_on: dt.date, livemode: bool = True
) -> list[SettlementDayFigures]:
    """The batches of `batches` (already limited to what the reader may see) settling on `settle_on`, summed per
    sponsor bank, currency and status in one grouped query; held ones say why (the distinct reasons)."""
    held = Q(status=SettlementBatch.Status.HELD) & ~Q(hold_reason="")
    bank = "merchant__sponsor_bank"
    rows = (
        batches.filter(settle_on=settle_on, livemode=livemode)
        .values(bank, f"{bank}__code", f"{bank}__name_zh", "currency", "status")
        .annotate(
            batches=Count("pk"),
            payments=Sum("payments_count"),
            gross=Sum("gross"),
            refunds=Sum("refunds"),
            fees=Sum("fee_total"),
            promotion_charges=Sum("promotion_charges"),
            cofunding_credits=Sum("cofunding_credits"),
            reserve_held=Sum("reserve_held"),
            reserve_released=Sum("reserve_released"),
            carried_out=Sum("carried_out"),
            net=Sum("net"),
            hold_reasons=ArrayAgg("hold_reason", distinct=True, filter=held, default=Value([])),
        )
        .order_by(f"{bank}__code", "currency", "status")
    )
    return [
        SettlementDayFigures(
            bank_id=row[bank],
            bank=f"{row[f'{bank}__code']} {row[f'{bank}__name_zh']}",
            currency=row["currency"],
            status=row["status"],
            batches=row["batches"],
            payments=row["payments"],
            hold_reasons=sorted(row["hold_reasons"]),
            **{name: row[name] for name in SettlementDayFigures.AMOUNTS},
        )
        for row in rows
    ]


@dataclass(frozen=True)
class SettlementBankDay:
    """One sponsor bank's batches of one currency settling on a day: a row per status and their total."""

    bank_id: int
    bank: str
    currency: str
    rows: list[SettlementDayFigures]
    total: SettlementDayFigures


def settlement_day_by_bank(figures: list[SettlementDayFigures]) -> list[SettlementBankDay]:
    """The report's rows grouped per bank and currency (as they come, ordered), each group with its total."""
    groups: dict[tuple[int, str], list[SettlementDayFigures]] = {}
    for row in figures:
        groups.setdefault((row.bank_id, row.currency), []).append(row)
    days = []
    for (bank_id, currency), rows in groups.items():
        total = SettlementDayFigures(
            bank_id=bank_id,
            bank=rows[0].bank,
            currency=currency,
            status="",
            batches=sum(row.batches for row in rows),
            payments=sum(row.payments for row in rows),
            hold_reasons=sorted({reason for row in rows for reason in row.hold_reasons}),
            **{name: sum(getattr(row, name) for row in rows) for name in SettlementDayFigures.AMOUNTS},
        )
        days.append(SettlementBankDay(bank_id, rows[0].bank, currency, rows, total))
    return days


REPORT_CSV_COLUMNS = (
    "bank",
    "currency",
    "status",
    "batches",
    "payments",
    *SettlementDayFigures.AMOUNTS,
    "hold_reasons",
)


def settlement_day_csv(days: list[SettlementBankDay]) -> str:
    """The report as CSV: a row per bank, currency and status, then the bank's total (status "total"); amounts in the
    currency's units with its decimals ("1288.00"), exact."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(REPORT_CSV_COLUMNS)
    for day in days:
        for row in (*day.rows, day.total):
            places = MINOR_UNIT_EXPONENT.get(day.currency, 2)
            amounts = [f"{Decimal(getattr(row, name)).scaleb(-places):.{places}f}" for name in row.AMOUNTS]
            writer.writerow(
                [day.bank, day.currency, row.status or "total", row.batches, row.payments, *amounts,
                 "; ".join(row.hold_reasons)]
            )  # fmt: skip
    return out.getvalue()


def spending_by_category(*, cardholder_id: int, since: dt.datetime, until: dt.datetime) -> dict[str, int]:
    """The cardholder's own CNY spending captured in [since, until) (`spending.spent_between`: the spending page's
    rule) net of what was refunded of it, in fen by spend category; categories with nothing spent are left out. One
    query."""
    rows = (
        spent_between(cardholder_id, since, until)
        .filter(currency="CNY")
        .values("spend_category")
        .annotate(net=Sum(F("amount_captured") - F("amount_refunded")))
        .order_by("spend_category")
    )
    return {row["spend_category"]: int(row["net"]) for row in rows if row["net"]}


# --- disputes, as the cardholder sees them ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CardholderDispute:
    """A dispute of one of the cardholder's payments, as the portal shows it (`payments/_dispute_state.html`)."""

    payment_id: str
    kind: str
    kind_display: str
    status: str
    status_display: str
    amount: int
    currency: str
    opened_at: datetime
    closed_at: datetime | None

    @property
    def is_open(self) -> bool:
        return self.status in Dispute.OPEN_STATUSES

    @property
    def amount_display(self) -> str:
        return format_minor(self.amount, self.currency)


def disputes_for_payments(cardholder: Cardholder, payment_ids: Collection[str]) -> dict[str, list[CardholderDispute]]:
    """The disputes of these payments (public ids) that are the cardholder's own, newest first, by payment; a payment
    of someone else's is simply absent. One query."""
    rows = (
        Dispute.objects.filter(payment__cardholder=cardholder, payment__public_id__in=list(payment_ids))
        .select_related("payment")
        .order_by("-id")
    )
    found: dict[str, list[CardholderDispute]] = {}
    for row in rows:
        found.setdefault(row.payment.public_id, []).append(
            CardholderDispute(
                payment_id=row.payment.public_id,
                kind=row.kind,
                kind_display=row.get_kind_display(),
                status=row.status,
                status_display=row.get_status_display(),
                amount=row.amount,
                currency=row.currency,
                opened_at=row.created_at,
                closed_at=row.closed_at,
            )
        )
    return found


def archived_payment_month(
    public_id: str, *, livemode: bool, merchant_id: int | None = None, cardholder_id: int | None = None
) -> dt.date | None:
    """The month (Asia/Shanghai) in which the payment `public_id` was made, if that month was archived and the
    payment is the merchant's (or the cardholder's) in this mode; None otherwise. Read from the archive tables, and
    only when a month is archived: the path of a payment that is not found live, so that its owner hears why."""
    if (merchant_id is None) == (cardholder_id is None):
        raise ValueError("Name the payment's merchant or its cardholder, one of them.")
    table = PaymentIntent._meta.db_table
    archives = archive_tables(table)
    if not archives:
        return None
    owner = "merchant_id" if merchant_id is not None else "cardholder_id"
    source = with_archives(table, ("public_id", owner, "livemode", "created_at"), archives)
    with connections[router.db_for_read(PaymentIntent)].cursor() as cursor:
        cursor.execute(
            f"SELECT created_at FROM {source} p"  # noqa: S608 (names checked by with_archives)
            f" WHERE public_id = %s AND {owner} = %s AND livemode = %s LIMIT 1",
            [public_id, merchant_id if merchant_id is not None else cardholder_id, livemode],
        )
        row = cursor.fetchone()
    return None if row is None else row[0].astimezone(SHANGHAI).date().replace(day=1)


def payments_archived_before() -> dt.date | None:
    """The first month after the newest month of payments that was archived, or None while none is: what the
    cardholder's statement says it no longer lists (archived months are the oldest ones). One query."""
    return archived_before(PaymentIntent._meta.db_table)
