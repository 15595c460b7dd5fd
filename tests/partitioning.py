"""What the tests of the tables partitioned by month share: raw reads, a month's instant, where a row lives, the
plan PostgreSQL makes for a statement (which partitions it reads), and writes whose keys are checked at once."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from django.db import IntegrityError, connection, transaction

from core.calendar import SHANGHAI


def fetch(statement: str, params: Any = ()) -> list[tuple[Any, ...]]:
    """The statement's rows (none for a statement that returns none)."""
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return list(cursor.fetchall()) if cursor.description else []


def at(year: int, month: int, day: int = 15, hour: int = 12) -> dt.datetime:
    """An instant of that day in Asia/Shanghai, the zone the months are cut in."""
    return dt.datetime(year, month, day, hour, tzinfo=SHANGHAI)


def partition_of(table: str, pk: int) -> str:
    """The partition of `table` that holds the row with id `pk`."""
    (row,) = fetch(f"SELECT tableoid::regclass::text FROM {table} WHERE id = %s", (pk,))
    return str(row[0])


def explain(statement: str, params: Any = None) -> str:
    """PostgreSQL's plan for the statement, as text."""
    return "\n".join(row[0] for row in fetch("EXPLAIN " + statement, params))


def table_keys(table: str) -> set[str]:
    """The table's primary and unique keys, as PostgreSQL prints them."""
    return {
        str(definition)
        for (definition,) in fetch(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = %s::regclass AND contype IN ('p', 'u')",
            (table,),
        )
    }


def referring_keys(table: str) -> list[tuple[str, str]]:
    """The foreign keys to `table` (their top, on a partitioned referrer): (referring table, definition), in order."""
    return [
        (str(source), str(definition))
        for source, definition in fetch(
            "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE contype = 'f' AND confrelid = %s::regclass AND conparentid = 0 ORDER BY 1",
            (table,),
        )
    ]


def assert_monthly(table: str, column: str) -> None:
    """`table` is partitioned by RANGE on `column`, as the registry and the owner's function say, with this month and
    the next three made and the DEFAULT partition last."""
    from core.partitions import PARTITIONED, partitions

    assert PARTITIONED[table] == column
    assert fetch("SELECT partstrat FROM pg_partitioned_table WHERE partrelid = %s::regclass", (table,)) == [("r",)]
    assert fetch("SELECT mengka_partition_column(%s)", (table,)) == [(column,)]
    attached = partitions(table)
    assert attached[-1].name == f"{table}_default"
    this_month = dt.datetime.now(SHANGHAI).date().replace(day=1)
    assert len([p for p in attached if p.month is not None and p.month >= this_month]) >= 4


def payment_at(when: dt.datetime, **kwargs: Any) -> Any:
    """A captured payment (the factory's) created as if at `when`."""
    from tests.factories import FACTORIES

    with mock.patch("django.utils.timezone.now", return_value=when):
        return FACTORIES["payments.paymentintent"](**kwargs)


def immediately(make: Callable[[], Any]) -> Any:
    """`make()`, its keys checked at once (they are deferred to the commit otherwise)."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        return make()


def refused(make: Callable[[], Any], match: str) -> None:
    """`make()` is refused by the database, naming `match` (a constraint)."""
    with pytest.raises(IntegrityError, match=match):
        immediately(make)
