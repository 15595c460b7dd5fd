"""What the tests of the tables partitioned by month share: raw reads, a month's instant, where a row lives, and the
plan PostgreSQL makes for a statement (which partitions it reads)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import connection

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
