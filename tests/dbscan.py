"""What a dump of the database would show: every row of every table in the current schema, cast to text.

    assert secret not in database_text()

Each row is read as `SELECT t::text FROM <table> t`: every column as PostgreSQL prints it (JSON, arrays and long,
compressed values included), so a value stored in the clear anywhere, in any column, is found."""

from __future__ import annotations

from django.db import connection


def database_tables() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name"
        )
        return [name for (name,) in cursor.fetchall()]


def database_text() -> str:
    """Every row of every table, one per line, each line prefixed by its table's name."""
    lines: list[str] = []
    with connection.cursor() as cursor:
        for table in database_tables():
            cursor.execute(f"SELECT t::text FROM {connection.ops.quote_name(table)} t")  # a name from the catalogue
            lines.extend(f"{table}: {row}" for (row,) in cursor.fetchall())
    return "\n".join(lines)
