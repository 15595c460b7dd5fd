"""Tables partitioned by month, and the job that keeps their partitions ready (docs/scaling.md, "Partitioning by
month").

A registered table is a declaratively partitioned PostgreSQL table, RANGE on a timestamptz column, with one
partition per calendar month in Asia/Shanghai (`<table>_pYYYYMM`) and a DEFAULT partition for any row outside the
prepared months. Partitions are made and detached by two SECURITY DEFINER functions that the owner's migration
creates (core/migrations/0015_monthly_partitions.py): the application role may not create tables, but it may run them.
The functions accept only the tables that `mengka_partition_column` names; `PARTITIONED` here is the same list, with
the column each table is partitioned on, for the job and for queries that name their time window.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from psycopg2 import sql

from .calendar import SHANGHAI, local_now
from .errors import ValidationFailed
from .models import ArchivedMonth

logger = logging.getLogger(__name__)

# table -> the timestamptz column its months are cut on. Keep in step with mengka_partition_column (a migration).
# A table that refers to another comes before it: a month can be detached only once no row refers to it (entries
# before their transactions; fee splits, settlement lines, reconciliation exceptions, dispute evidence and
# disputes (evidence before disputes) before refunds and payments; webhook deliveries before their events).
PARTITIONED: dict[str, str] = {
    "rewards_entry": "created_at",
    "payments_paymentattempt": "intent_created_at",
    "payments_routingdecision": "intent_created_at",
    "payments_feesplit": "payment_created_at",
    "payments_settlementline": "payment_created_at",
    "payments_reconciliationexception": "payment_created_at",
    "payments_disputeevidence": "dispute_payment_created_at",
    "payments_dispute": "payment_created_at",
    "payments_refund": "intent_created_at",
    "payments_paymentintent": "created_at",
    "rewards_ledgertransaction": "created_at",
    "merchants_webhookdelivery": "event_created_at",
    "merchants_event": "created_at",
}


# table -> for how many days after the end of a month rows of that month may still be written (a refund of a payment
# and what it writes follow the payment's creation by up to the capture and refund windows): the month is kept until
# then. The owning app registers its tables (`keep_while_written`, payments/apps.py).
WRITTEN_FOR_DAYS: dict[str, int] = {}


def keep_while_written(tables: Iterable[str], days: int) -> None:
    """Rows of `tables` may be written up to `days` after their month ends: the job keeps the month until then."""
    for table in tables:
        WRITTEN_FOR_DAYS[_registered(table)] = max(days, WRITTEN_FOR_DAYS.get(table, 0))


_VOUCHERS_ISSUED_PAID_BY = (
    "SELECT p.transaction_id FROM rewards_voucherpayment p JOIN rewards_voucher v ON v.id = p.voucher_id"
    " WHERE v.state = 'issued'"
)
_UNSEALED = "SELECT t.id FROM rewards_ledgertransaction t WHERE t.seal_id IS NULL"

# Rows whose story is not over: a month holding one is kept, since a late answer (the channel's, the merchant's
# endpoint's, the operators') must still find its row. Per table, each rule's reason (what the job's `kept` list says)
# and its condition: SQL over the table's row, which may name `%(today)s`, the start of the job's day (Asia/Shanghai),
# so that a run for another day (a backfill, a test) judges by that day, not by the database's clock. An open
# reconciliation exception may still hold its payment's settlement; a dispute's answer may be sent again with its
# evidence until it is decided; the merchant's next settlement reads a dispute lost in the last 30 days for its
# debit. A voucher still issued may be cancelled, which reverses the transaction that paid for it, reading the
# transaction and its entries; a transaction not sealed yet is still to be hashed into the seal chain, from its row
# and its entries in the live months (the sealer reads no archive). The owning app adds rules of its own terms
# (`keep_while_open`).
OPEN_ROWS: dict[str, dict[str, str]] = {
    "payments_paymentattempt": {
        "an attempt's outcome is not known yet": "status IN ('pending', 'unknown', 'authorized')"
    },
    "payments_reconciliationexception": {"an exception is still open": "status = 'open'"},
    "payments_refund": {"a refund's outcome is not known yet": "status IN ('pending', 'unknown')"},
    "payments_dispute": {
        "a dispute is not decided yet": "status IN ('open', 'evidence_submitted')",
        "a dispute lost in the last 30 days is not debited yet": (
            "status IN ('lost', 'accepted', 'expired') AND kind <> 'retrieval'"
            " AND closed_at > %(today)s - interval '30 days'"
            " AND NOT EXISTS (SELECT 1 FROM payments_settlementline l WHERE l.dispute_id = payments_dispute.id"
            " AND l.payment_created_at = payments_dispute.payment_created_at AND l.kind = 'dispute')"
        ),
    },
    "payments_disputeevidence": {
        "it is the evidence of a dispute not decided yet": (
            "EXISTS (SELECT 1 FROM payments_dispute d WHERE d.id = dispute_id"
            " AND d.payment_created_at = dispute_payment_created_at AND d.status IN ('open', 'evidence_submitted'))"
        )
    },
    "merchants_webhookdelivery": {"a delivery is still retried": "status = 'pending'"},
    "rewards_entry": {
        "a transaction of it paid for a voucher still issued": f"transaction_id IN ({_VOUCHERS_ISSUED_PAID_BY})",
        "a transaction of it is not sealed yet": f"transaction_id IN ({_UNSEALED})",
    },
    "rewards_ledgertransaction": {
        "a transaction of it paid for a voucher still issued": f"id IN ({_VOUCHERS_ISSUED_PAID_BY})",
        "a transaction of it is not sealed yet": "seal_id IS NULL",
    },
}


def keep_while_open(table: str, reason: str, condition: str) -> None:
    """Rows of `table` that meet `condition` (SQL over the table's row, which may name `%(today)s`) keep their month,
    for `reason`, as `OPEN_ROWS` does: the owning app registers the rules that depend on its own terms
    (payments/apps.py)."""
    OPEN_ROWS.setdefault(_registered(table), {})[reason] = condition


# A table's foreign keys from tables that are not partitions: each one's table, its columns, and the column among
# them that holds the referred-to table's partition column (every key to a partitioned table includes it).
SQL_REFERRERS = """
    SELECT r.relname, array_agg(a.attname ORDER BY k.ord), max(a.attname) FILTER (WHERE t.attname = %(column)s)
    FROM pg_constraint c
    JOIN pg_class r ON r.oid = c.conrelid
    CROSS JOIN LATERAL unnest(c.conkey, c.confkey) WITH ORDINALITY AS k(ref, tgt, ord)
    JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.ref
    JOIN pg_attribute t ON t.attrelid = c.confrelid AND t.attnum = k.tgt
    WHERE c.contype = 'f' AND c.confrelid = to_regclass(%(table)s) AND c.conparentid = 0
      AND NOT r.relispartition AND c.conrelid <> c.confrelid
    GROUP BY c.oid, r.relname
    ORDER BY r.relname
"""


class PartitionError(ValidationFailed):
    code = "partition_refused"


@dataclass(frozen=True)
class Partition:
    name: str
    month: date | None  # None: the DEFAULT partition


@dataclass(frozen=True)
class MaintainResult:
    created: list[str]
    archived: list[str]
    kept: list[str] = field(default_factory=list)  # old months not archived, and why


def month_start(day: date) -> date:
    return day.replace(day=1)


def add_months(month: date, months: int) -> date:
    index = month.year * 12 + month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def month_bounds(month: date) -> tuple[datetime, datetime]:
    """The month's partition bounds: from its first instant in Asia/Shanghai to the next month's."""
    first, following = month_start(month), add_months(month_start(month), 1)
    return (
        datetime(first.year, first.month, 1, tzinfo=SHANGHAI),
        datetime(following.year, following.month, 1, tzinfo=SHANGHAI),
    )


def _registered(table: str) -> str:
    if table not in PARTITIONED:
        raise PartitionError(f"{table!r} is not a table partitioned by month.", param="table")
    return table


def partitions_create(table: str, first_month: date, months: int) -> list[str]:
    """Creates the missing monthly partitions of `table` from `first_month` on; returns the names it created."""
    _registered(table)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT mengka_partitions_create(%s, %s, %s)", [table, month_start(first_month), int(months)])
        return [name for (name,) in cursor.fetchall()]


def partition_detach(table: str, month: date) -> str | None:
    """Detaches `table`'s partition of `month`, renames it `<table>_archive_YYYYMM` and records it as an
    `ArchivedMonth`, in one transaction; None if the month has no partition."""
    _registered(table)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT mengka_partition_detach(%s, %s)", [table, month_start(month)])
            row = cursor.fetchone()
        name = row[0] if row else None
        if name:
            ArchivedMonth.objects.create(table=table, month=month_start(month), archive_table=name)
    return name


def archive_tables(table: str) -> list[str]:
    """The archive tables of `table`'s detached months, oldest month first."""
    _registered(table)
    return list(ArchivedMonth.objects.filter(table=table).order_by("month").values_list("archive_table", flat=True))


def archived_before(table: str) -> date | None:
    """The first month after the newest archived month of `table`, or None while none is: where a list of the live
    table stops (archived months are the oldest ones). One query."""
    newest = ArchivedMonth.objects.filter(table=_registered(table)).order_by("-month").values_list("month").first()
    return None if newest is None else add_months(newest[0], 1)


def archive_tables_of(tables: Iterable[str]) -> dict[str, list[str]]:
    """`archive_tables` of each of `tables`, read in one query."""
    found: dict[str, list[str]] = {_registered(table): [] for table in tables}
    records = ArchivedMonth.objects.filter(table__in=list(found)).order_by("table", "month")
    for table, name in records.values_list("table", "archive_table"):
        found[table].append(name)
    return found


class PeriodArchived(ValidationFailed):
    code = "period_archived"


def refuse_archived(tables: Iterable[str], start: datetime, end: datetime, *, param: str | None = None) -> None:
    """Refuses (`PeriodArchived`) a job about to read `tables`' rows from `start` to `end` (half-open) when a month of
    one of them in that range was archived: the job would miss those rows and record a wrong result (a day cleared, a
    statement reconciled, a month shared out) rather than fail. One query."""
    names = [_registered(table) for table in tables]
    first = month_start(start.astimezone(SHANGHAI).date())
    last = month_start((end - timedelta(microseconds=1)).astimezone(SHANGHAI).date())
    gone = ArchivedMonth.objects.filter(table__in=names, month__gte=first, month__lte=last).order_by("month", "table")
    found = gone.values_list("table", "month").first()
    if found is not None:
        table, month = found
        raise PeriodArchived(
            f"The rows of {table} made in {month:%Y-%m} have been archived: this run would miss them.", param=param
        )


_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]*")


def is_archive_of(table: str, name: str) -> bool:
    """Whether `name` is shaped as the archive table of one of `table`'s months, `<table>_archive_YYYYMM`."""
    return re.fullmatch(rf"{re.escape(table)}_archive_[0-9]{{6}}", name) is not None


def with_archives(table: str, columns: Sequence[str], archives: Sequence[str] | None = None) -> str:
    """A FROM source of `columns` of `table` and of its archived months (`archives`, by default every one recorded),
    for a read whose rows stay the table's once archived (the ledger's entries, a payment's settlement line): the
    table's name while none is archived, else a parenthesised UNION ALL. Columns are named because an archive keeps
    the columns its month had. The names are checked, not quoted: plain identifiers, and archives named
    `<table>_archive_YYYYMM`."""
    _registered(table)
    archives = archive_tables(table) if archives is None else list(archives)
    if not archives:
        return f'"{table}"'
    if not all(_IDENTIFIER.fullmatch(column) for column in columns):
        raise PartitionError(f"Columns {columns!r} are not plain names.")
    for name in archives:
        if not is_archive_of(table, name):
            raise PartitionError(f"{name!r} is not the name of an archive of {table}.")
    select = ", ".join(f'"{column}"' for column in columns)
    tables = [table, *archives]
    return "(" + " UNION ALL ".join(f'SELECT {select} FROM "{name}"' for name in tables) + ")"  # noqa: S608


# The columns an operator finds a row of an archive table by (`archived_rows`), those the table has: a row's own id or
# public id, a ledger transaction's idempotency key, a channel's or our reference, and the payment, transaction,
# dispute or event a row belongs to.
LOOKUP_NUMBERS = ("id", "transaction_id", "payment_id", "intent_id", "dispute_id", "event_id")
LOOKUP_TEXTS = ("public_id", "idempotency_key", "reference", "channel_reference")
LOOKUP_MAX_LENGTH = 200
_NUMBER = re.compile(r"[0-9]{1,18}")  # fits a bigint


@dataclass(frozen=True)
class ArchivedRows:
    """What `archived_rows` found: the archive table's columns in order, the columns looked in, up to `limit` rows
    by id, and whether more matched."""

    columns: list[str]
    searched: list[str]
    rows: list[tuple[object, ...]]
    more: bool


def _lookup_term(term: str) -> str:
    term = term.strip()
    if not term or len(term) > LOOKUP_MAX_LENGTH or not term.isprintable():
        raise ValidationFailed(
            f"Give an id, a public id or a key of at most {LOOKUP_MAX_LENGTH} printable characters.",
            code="invalid",
            param="q",
        )
    return term


def _described(archives: Sequence[str]) -> dict[str, list[tuple[str, bool]]]:
    """Each archive table's columns in order, each with whether it is text (text or varchar), in one query; a table
    that has gone is not among them."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, a.attname, a.atttypid IN ('text'::regtype, 'varchar'::regtype)"
            " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
            " WHERE a.attrelid IN (SELECT to_regclass(name) FROM unnest(%s::text[]) name)"
            " AND a.attnum > 0 AND NOT a.attisdropped ORDER BY c.relname, a.attnum",
            [list(archives)],
        )
        described: dict[str, list[tuple[str, bool]]] = {}
        for table, column, text in cursor.fetchall():
            described.setdefault(table, []).append((column, text))
    return described


def _lookup(columns: list[tuple[str, bool]], term: str) -> tuple[list[str], sql.Composable]:
    """The lookup columns among `columns` that `term` may be in (a number in the id ones, any term in the text ones),
    and the condition that one of them holds it (`%(number)s`, `%(text)s`; FALSE when none may)."""
    names = [name for name, _text in columns]
    numbers = [c for c in LOOKUP_NUMBERS if c in names] if _NUMBER.fullmatch(term) else []
    texts = [c for c in LOOKUP_TEXTS if (c, True) in columns]
    matches = [sql.SQL("{} = %(number)s").format(sql.Identifier(c)) for c in numbers] + [
        sql.SQL("{} = %(text)s").format(sql.Identifier(c)) for c in texts
    ]
    return numbers + texts, sql.SQL(" OR ").join(matches) if matches else sql.SQL("FALSE")


def _lookup_params(term: str) -> dict[str, int | str | None]:
    return {"number": int(term) if _NUMBER.fullmatch(term) else None, "text": term}


def archived_rows(record: ArchivedMonth, term: str, *, limit: int = 50) -> ArchivedRows:
    """The rows of `record`'s archive table that `term` names exactly in one of the lookup columns it has (a number
    in the id columns, any term in the text ones), by id. The archive keeps its month's indexes, so a lookup by id,
    public id, key or payment reads by index."""
    term = _lookup_term(term)
    if not is_archive_of(record.table, record.archive_table):
        raise PartitionError(f"{record.archive_table!r} is not the name of an archive of {record.table}.")
    described = _described([record.archive_table]).get(record.archive_table)
    if not described:
        raise PartitionError(f"The archive table {record.archive_table} is missing.", code="archive_missing")
    columns = [name for name, _text in described]
    searched, condition = _lookup(described, term)
    if not searched:
        return ArchivedRows(columns=columns, searched=[], rows=[], more=False)
    query = sql.SQL("SELECT * FROM {} WHERE {} ORDER BY {} LIMIT %(limit)s").format(
        sql.Identifier(record.archive_table), condition, sql.Identifier("id" if "id" in columns else columns[0])
    )
    with connection.cursor() as cursor:
        cursor.execute(query, {**_lookup_params(term), "limit": limit + 1})
        rows = cursor.fetchall()
    return ArchivedRows(columns=columns, searched=searched, rows=rows[:limit], more=len(rows) > limit)


def archived_months_holding(table: str, term: str) -> list[ArchivedMonth]:
    """The archived months of `table` whose archive holds a row that `term` names (as `archived_rows` finds it),
    newest first, in three queries however many months: the records, their archives' columns, and one probe of each
    archive's indexes in a UNION ALL. A term no archive may be searched by, or an archive table gone, finds nothing
    there."""
    try:
        term = _lookup_term(term)
    except ValidationFailed:
        return []
    records = [
        record
        for record in ArchivedMonth.objects.filter(table=_registered(table)).order_by("-month")
        if is_archive_of(table, record.archive_table)
    ]
    described = _described([record.archive_table for record in records])
    probes = []
    for name, columns in described.items():
        searched, condition = _lookup(columns, term)
        if searched:
            probes.append(
                sql.SQL("SELECT {} WHERE EXISTS (SELECT 1 FROM {} WHERE {})").format(
                    sql.Literal(name), sql.Identifier(name), condition
                )
            )
    if not probes:
        return []
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL(" UNION ALL ").join(probes), _lookup_params(term))
        holding = {name for (name,) in cursor.fetchall()}
    return [record for record in records if record.archive_table in holding]


def partitions(table: str) -> list[Partition]:
    """The partitions attached to `table`, months in order, the DEFAULT partition last."""
    _registered(table)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'"
            " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s)",
            [table],
        )
        rows = cursor.fetchall()
    months: list[Partition] = []
    default: list[Partition] = []
    prefix = f"{table}_p"
    for name, is_default in rows:
        if is_default:
            default.append(Partition(name, None))
        elif name.startswith(prefix) and name[len(prefix) :].isdigit():
            stamp = name[len(prefix) :]
            months.append(Partition(name, date(int(stamp[:4]), int(stamp[4:6]), 1)))
    return sorted(months, key=lambda p: p.month or date.min) + default


def months_in_default(table: str) -> list[date]:
    """The months (Asia/Shanghai) of the rows `table`'s DEFAULT partition holds, oldest first. A row without a time (a
    settlement line without a payment) has no month: it stays in the default."""
    default = next((p.name for p in partitions(table) if p.month is None), None)
    if default is None:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL(
                "SELECT DISTINCT date_trunc('month', {0} AT TIME ZONE 'Asia/Shanghai')::date FROM {1}"
                " WHERE {0} IS NOT NULL ORDER BY 1"
            ).format(sql.Identifier(PARTITIONED[table]), sql.Identifier(default))
        )
        return [month for (month,) in cursor.fetchall()]


def _has_rows(
    table: str, column: str, month: date, condition: sql.Composable, params: dict[str, datetime] | None = None
) -> bool:
    """Whether `table` has a row whose `column` falls in `month` (Asia/Shanghai) and that meets `condition`, which
    may name `params` (`%(name)s`)."""
    first, following = month_bounds(month)
    with connection.cursor() as cursor:
        query = "SELECT EXISTS (SELECT 1 FROM {0} WHERE {1} >= %(first)s AND {1} < %(following)s AND ({2}))"
        cursor.execute(
            sql.SQL(query).format(sql.Identifier(table), sql.Identifier(column), condition),
            {**(params or {}), "first": first, "following": following},
        )
        return bool(cursor.fetchone()[0])


def has_open_rows(table: str, month: date, *, today: date | None = None) -> str | None:
    """Why `table`'s rows of `month` hold one that is not over yet: the reason of the first `OPEN_ROWS` rule that
    such a row meets, judged on `today` (by default the current day in Asia/Shanghai); None when no row meets any.
    One query, which stops at the first such row."""
    _registered(table)
    rules = list(OPEN_ROWS.get(table, {}).items())
    if not rules:
        return None
    day = today or local_now().date()
    first, following = month_bounds(month)
    params: dict[str, datetime | str] = {
        "today": datetime(day.year, day.month, day.day, tzinfo=SHANGHAI),
        "first": first,
        "following": following,
        **{f"reason_{n}": reason for n, (reason, _condition) in enumerate(rules)},
    }
    conditions = [sql.SQL(f"({condition})") for _reason, condition in rules]
    reason = sql.SQL(" ").join(
        sql.SQL("WHEN {} THEN {}").format(condition, sql.Placeholder(f"reason_{n}"))
        for n, condition in enumerate(conditions)
    )
    query = sql.SQL("SELECT CASE {} END FROM {} WHERE {} >= %(first)s AND {} < %(following)s AND ({}) LIMIT 1").format(
        reason,
        sql.Identifier(table),
        sql.Identifier(PARTITIONED[table]),
        sql.Identifier(PARTITIONED[table]),
        sql.SQL(" OR ").join(conditions),
    )
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        row = cursor.fetchone()
    return None if row is None else str(row[0])


def referred_by(table: str, month: date) -> list[str]:
    """The tables with rows that refer to `table`'s rows of `month` (which PostgreSQL would not let go), by name."""
    _registered(table)
    with connection.cursor() as cursor:
        cursor.execute(SQL_REFERRERS, {"table": table, "column": PARTITIONED[table]})
        keys = cursor.fetchall()
    referring: list[str] = []
    for referrer, columns, time_column in keys:
        # A key with a NULL column refers to nothing (MATCH SIMPLE).
        every_column_set = sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(sql.Identifier(c)) for c in columns)
        if referrer not in referring and _has_rows(referrer, time_column, month, every_column_set):
            referring.append(referrer)
    return referring


def partitions_maintain(
    *, today: date | None = None, ahead: int | None = None, archive_after: int | None = None
) -> MaintainResult:
    """Creates the current month's partition and the next `ahead` months' (PARTITION_MONTHS_AHEAD) of every
    registered table, and the month of every row its DEFAULT partition holds (the rows move there) unless that month
    was archived; with `archive_after` (PARTITION_ARCHIVE_AFTER_MONTHS, None: never) detaches the months that began
    more than that many months before the current one to archive tables. It keeps, and says why, a month whose rows
    may still be written (`WRITTEN_FOR_DAYS`), one with rows still open (`OPEN_ROWS`) and one whose rows other rows
    still refer to."""
    today = today or local_now().date()
    ahead = settings.PARTITION_MONTHS_AHEAD if ahead is None else ahead
    archive_after = settings.PARTITION_ARCHIVE_AFTER_MONTHS if archive_after is None else archive_after
    if ahead < 0 or (archive_after is not None and archive_after < 1):
        raise PartitionError("Months ahead must be 0 or more, and months before archiving 1 or more.")
    current = month_start(today)
    created: list[str] = []
    archived: list[str] = []
    kept: list[str] = []
    for table in PARTITIONED:
        archived_months = set(ArchivedMonth.objects.filter(table=table).values_list("month", flat=True))
        for month in months_in_default(table):
            if month not in archived_months:  # a late row of an archived month stays in the DEFAULT partition
                created += partitions_create(table, month, 1)
        created += partitions_create(table, current, ahead + 1)
        if archive_after is None:
            continue
        oldest_kept = add_months(current, -archive_after)
        for partition in partitions(table):
            if partition.month is None or partition.month >= oldest_kept:
                continue
            written_until = add_months(partition.month, 1) + timedelta(days=WRITTEN_FOR_DAYS.get(table, 0))
            if today < written_until:
                kept.append(f"{partition.name}: rows of it may be written until {written_until.isoformat()}")
                continue
            still_open = has_open_rows(table, partition.month, today=today)
            if still_open:
                kept.append(f"{partition.name}: some of its rows are still open: {still_open}")
                continue
            referring = referred_by(table, partition.month)
            if referring:
                kept.append(f"{partition.name}: rows of {', '.join(referring)} refer to it")
                continue
            name = partition_detach(table, partition.month)
            if name:
                logger.info("partitions: %s detached to %s", partition.name, name)
                archived.append(name)
    for reason in kept:
        logger.info("partitions: kept %s", reason)
    return MaintainResult(created=created, archived=archived, kept=kept)
