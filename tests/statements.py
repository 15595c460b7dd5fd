"""Reading captured statements: a prepared statement's EXECUTE shown as the SQL it stands for (core.db)."""

from __future__ import annotations

from core.db import prepared_sql


def as_written(sql: str) -> str:
    if sql.startswith("EXECUTE "):
        written = prepared_sql(sql.split()[1].split("(")[0])
        assert written is not None
        return written
    return sql
