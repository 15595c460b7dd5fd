"""The whole database as text, the way a dump would show it: every row of every table in the public schema, cast to
text by PostgreSQL itself (so JSON, arrays and every column type read as they are stored)."""

from __future__ import annotations

from django.db import connection


def database_text() -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name"
        )
        tables = [name for (name,) in cursor.fetchall()]
        chunks = []
        for table in tables:
            cursor.execute(f"SELECT t::text FROM {connection.ops.quote_name(table)} t")
            chunks.extend(row for (row,) in cursor.fetchall())
    return "\n".join(chunks)
