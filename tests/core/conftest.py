"""Fixtures shared by the core tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.db import DatabaseError, connection, transaction
from psycopg2 import sql


@pytest.fixture
def role_name() -> Iterator[str]:
    """A fresh role name for an application role a test creates (with `db_roles`); the role and what it owns are
    dropped after the test."""
    name = f"mengka_test_app_{uuid.uuid4().hex[:12]}"
    yield name
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
            cursor.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (name,))
            if cursor.fetchone()[0]:
                cursor.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
                cursor.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
    except DatabaseError:
        pass  # an aborted test transaction: its rollback drops the role
