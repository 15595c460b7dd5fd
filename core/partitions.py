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
from dataclasses import dataclass
from datetime import date, datetime

from django.conf import settings
from django.db import connection, transaction
from psycopg2 import sql

from .calendar import SHANGHAI, local_now
from .errors import ValidationFailed
from .models import ArchivedMonth

logger = logging.getLogger(__name__)

# table -> the timestamptz column its months are cut on. Keep in step with mengka_partition_column (a migration).
# A table that refers to another comes before it: a month can be detached only once no row refers to it (entries
# before their transactions, fee splits before refunds and payments, webhook deliveries before their events).
PARTITIONED: dict[str, str] = {
    "rewards_entry": "created_at",
    "payments_paymentattempt": "intent_created_at",
    "payments_feesplit": "payment_created_at",
    "payments_refund": "intent_created_at",
    "payments_paymentintent": "created_at",
    "rewards_ledgertransaction": "created_at",
    "merchants_webhookdelivery": "event_created_at",
    "merchants_event": "created_at",
}


# Months the job makes but never archives: unpartitioned tables refer to them — lots, holds and the idempotency keys
# to the ledger's transactions; settlement lines and reconciliation exceptions to refunds and payments; routing
# decisions, disputes and payment codes to payments — and PostgreSQL refuses to detach a month whose rows they refer
# to. (Fee splits refer to refunds and payments too, but are partitioned by the payment's month: theirs is archived
# first, and its archive table keeps no key to them.)
NEVER_ARCHIVED = frozenset({"rewards_ledgertransaction", "payments_refund", "payments_paymentintent"})


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
    """The months (Asia/Shanghai) of the rows `table`'s DEFAULT partition holds, oldest first."""
    default = next((p.name for p in partitions(table) if p.month is None), None)
    if default is None:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL(
                "SELECT DISTINCT date_trunc('month', {} AT TIME ZONE 'Asia/Shanghai')::date FROM {} ORDER BY 1"
            ).format(sql.Identifier(PARTITIONED[table]), sql.Identifier(default))
        )
        return [month for (month,) in cursor.fetchall()]


def partitions_maintain(
    *, today: date | None = None, ahead: int | None = None, archive_after: int | None = None
) -> MaintainResult:
    """Creates the current month's partition and the next `ahead` months' (PARTITION_MONTHS_AHEAD) of every
    registered table, and the month of every row its DEFAULT partition holds (the rows move there); with
    `archive_after` (PARTITION_ARCHIVE_AFTER_MONTHS, None: never) detaches the months that began more than that many
    months before the current one to archive tables (not the ledger's transactions', refunds' nor payments':
    `NEVER_ARCHIVED`)."""
    today = today or local_now().date()
    ahead = settings.PARTITION_MONTHS_AHEAD if ahead is None else ahead
    archive_after = settings.PARTITION_ARCHIVE_AFTER_MONTHS if archive_after is None else archive_after
    if ahead < 0 or (archive_after is not None and archive_after < 1):
        raise PartitionError("Months ahead must be 0 or more, and months before archiving 1 or more.")
    current = month_start(today)
    created: list[str] = []
    archived: list[str] = []
    for table in PARTITIONED:
        for month in months_in_default(table):
            created += partitions_create(table, month, 1)
        created += partitions_create(table, current, ahead + 1)
        if archive_after is None or table in NEVER_ARCHIVED:
            continue
        oldest_kept = add_months(current, -archive_after)
        for partition in partitions(table):
            if partition.month is not None and partition.month < oldest_kept:
                name = partition_detach(table, partition.month)
                if name:
                    logger.info("partitions: %s detached to %s", partition.name, name)
                    archived.append(name)
    return MaintainResult(created=created, archived=archived)
