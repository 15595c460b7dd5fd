"""The database's two roles.

The *owner* runs migrations and owns every table. The *application role* is what the web processes, workers and beat
connect as: it reads and writes the tables but owns none of them. Only a table's owner (or a superuser) can disable
or drop its triggers, so an application role that owns nothing cannot lift the audit log's append-only guard
(core/migrations/0002_audit_append_only.py), and its grant on the audit log is SELECT and INSERT only: no UPDATE,
DELETE, TRUNCATE, REFERENCES or TRIGGER.

`app_role_grant` is run by the owner after every `migrate` (`manage.py db_roles`); `connected_role_risks` is what the
deploy check (core/checks.py) reports about the role a process is connected as. PostgreSQL only, written plainly with
`psycopg2.sql`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from django.db import connection, transaction
from psycopg2 import sql

from .errors import ValidationFailed

AUDIT_TABLE = "core_auditlog"
APP_TABLE_PRIVILEGES = sql.SQL("SELECT, INSERT, UPDATE, DELETE")
APP_SEQUENCE_PRIVILEGES = sql.SQL("USAGE, SELECT")
AUDIT_TABLE_PRIVILEGES = sql.SQL("SELECT, INSERT")
# The owner's SECURITY DEFINER functions the application role runs (core/partitions.py): next months' partitions.
APP_FUNCTIONS = ("mengka_partitions_create(text, date, integer)", "mengka_partition_detach(text, date)")
# What the application role must not hold on the audit log, by any path (directly, through PUBLIC or another role).
AUDIT_REFUSED_PRIVILEGES = ("UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


class DatabaseRoleError(ValidationFailed):
    code = "database_role_refused"


@dataclass(frozen=True)
class AppRoleGrant:
    role: str
    created: bool
    password_set: bool
    schema: str
    tables: int
    sequences: int


def _one(query: str, params: tuple[str, ...] | dict[str, str] = ()) -> tuple[object, ...] | None:
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        row = cursor.fetchone()
    return tuple(row) if row is not None else None


def _execute(*statements: sql.Composable) -> None:
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def app_role_grant(*, role: str, password: str | None = None) -> AppRoleGrant:
    """Creates the application role if it is missing (LOGIN, with `password` when given; an existing role's password
    is changed only when one is given) and grants it, in the current database and schema: CONNECT, USAGE on the schema
    (never CREATE), SELECT/INSERT/UPDATE/DELETE on every table and view, USAGE/SELECT on every sequence, and SELECT,
    INSERT only on the audit log, EXECUTE on the owner's functions that create and archive monthly partitions
    (APP_FUNCTIONS); default privileges give tables and sequences the owner creates later (those partitions too) the
    same grants. Safe to run again at any time; run it after every `migrate`, which may create tables (a table a
    migration rebuilds gets the default grants until then).

    Run as the owner. Refuses, granting nothing, a role that is the connected one, a superuser, a member of the
    owner's role, or the owner of anything in the schema, and a database where the audit log is missing (not
    migrated). After granting it checks that the role holds none of UPDATE, DELETE, TRUNCATE, REFERENCES or TRIGGER
    on the audit log by any path (PUBLIC, another role) and rolls everything back if it does.
    """
    if not role or password == "":
        raise DatabaseRoleError("The application role needs a name, and a password when one is given.")
    with transaction.atomic():
        state = _one(
            "SELECT current_user, current_database(), current_schema(),"
            " (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = to_regclass(%s))",
            (AUDIT_TABLE,),
        )
        assert state is not None
        current_user, database, schema = str(state[0]), str(state[1]), str(state[2])
        if state[3] is None:
            raise DatabaseRoleError(f"{AUDIT_TABLE} does not exist in {database}: run migrate first, as the owner.")
        audit_owner = str(state[3])
        if role == current_user:
            raise DatabaseRoleError(
                f"{role!r} is the role running this command (the owner); the application role must be another one."
            )
        owner_check = _one("SELECT pg_has_role(current_user, %s, 'USAGE')", (audit_owner,))
        if not (owner_check and owner_check[0]):
            raise DatabaseRoleError(f"Run this as the tables' owner, {audit_owner!r}, not as {current_user!r}.")

        existing = _one("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,))
        created = existing is None
        if created:
            _execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE").format(sql.Identifier(role)))
        elif existing and existing[0]:
            raise DatabaseRoleError(f"{role!r} is a superuser: the application role must not be one.")
        if password is not None:
            _execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))

        member = _one("SELECT pg_has_role(%s, %s, 'MEMBER')", (role, audit_owner))
        if member and member[0]:
            raise DatabaseRoleError(f"{role!r} is a member of the owner's role {audit_owner!r}: it must not be.")
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT relname FROM pg_class WHERE relnamespace = %s::regnamespace"
                " AND pg_get_userbyid(relowner) = %s ORDER BY relname",
                (schema, role),
            )
            owned = [name for (name,) in cursor.fetchall()]
        if owned:
            listed = ", ".join(owned[:5]) + (", ..." if len(owned) > 5 else "")
            raise DatabaseRoleError(
                f"{role!r} owns {len(owned)} object(s) in {schema} ({listed}): the owner must own them "
                f"(REASSIGN OWNED BY {role} TO {audit_owner}, run as a superuser)."
            )

        app, where = sql.Identifier(role), sql.Identifier(schema)
        audit = sql.Identifier(schema, AUDIT_TABLE)
        _execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), app),
            sql.SQL("REVOKE CREATE ON SCHEMA {} FROM {}").format(where, app),
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(where, app),
            # Start from nothing, so a privilege granted by hand or by an earlier version goes (one transaction: the
            # running processes never see the role without its grants).
            sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {}").format(where, app),
            sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {} FROM {}").format(where, app),
            sql.SQL("GRANT {} ON ALL TABLES IN SCHEMA {} TO {}").format(APP_TABLE_PRIVILEGES, where, app),
            sql.SQL("GRANT {} ON ALL SEQUENCES IN SCHEMA {} TO {}").format(APP_SEQUENCE_PRIVILEGES, where, app),
            sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(audit, app),
            sql.SQL("GRANT {} ON TABLE {} TO {}").format(AUDIT_TABLE_PRIVILEGES, audit, app),
            sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT {} ON TABLES TO {}").format(
                where, APP_TABLE_PRIVILEGES, app
            ),
            sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT {} ON SEQUENCES TO {}").format(
                where, APP_SEQUENCE_PRIVILEGES, app
            ),
            *(
                sql.SQL("GRANT EXECUTE ON FUNCTION {}.{} TO {}").format(where, sql.SQL(function), app)
                for function in APP_FUNCTIONS
            ),
        )

        refused = _one(
            "SELECT has_any_column_privilege(%(role)s, %(table)s, 'UPDATE'),"
            " has_table_privilege(%(role)s, %(table)s, 'DELETE'),"
            " has_table_privilege(%(role)s, %(table)s, 'TRUNCATE'),"
            " has_any_column_privilege(%(role)s, %(table)s, 'REFERENCES'),"
            " has_table_privilege(%(role)s, %(table)s, 'TRIGGER')",
            {"role": role, "table": f"{schema}.{AUDIT_TABLE}"},
        )
        assert refused is not None
        held = [privilege for privilege, holds in zip(AUDIT_REFUSED_PRIVILEGES, refused, strict=True) if holds]
        if held:
            raise DatabaseRoleError(
                f"{role!r} still holds {', '.join(held)} on {AUDIT_TABLE} through PUBLIC or another role it belongs "
                "to; revoke that grant and run this again. Nothing was changed."
            )
        counts = _one(
            "SELECT count(*) FILTER (WHERE relkind IN ('r', 'p', 'v', 'm', 'f')),"
            " count(*) FILTER (WHERE relkind = 'S') FROM pg_class WHERE relnamespace = %s::regnamespace",
            (schema,),
        )
        assert counts is not None
    return AppRoleGrant(
        role=role,
        created=created,
        password_set=password is not None,
        schema=schema,
        tables=int(str(counts[0])),
        sequences=int(str(counts[1])),
    )


def password_from_environment(variable: str) -> str:
    """The application role's password from an environment variable (never a command-line argument, which other
    users of the host can read in the process list)."""
    password = os.environ.get(variable, "")
    if not password:
        raise DatabaseRoleError(f"The environment variable {variable} is not set or is empty.")
    return password


@dataclass(frozen=True)
class ConnectedRole:
    name: str
    superuser: bool
    audit_owner: str | None
    owns_audit_log: bool  # the owner of the audit log, or a member of its role: it could lift the append-only guard


def connected_role() -> ConnectedRole:
    """The role this process's default connection acts as, and what it could do to the audit log."""
    row = _one(
        "SELECT r.rolname, r.rolsuper, pg_get_userbyid(c.relowner),"
        " coalesce(pg_has_role(current_user, c.relowner, 'MEMBER'), false)"
        " FROM pg_roles r LEFT JOIN pg_class c ON c.oid = to_regclass(%s) WHERE r.rolname = current_user",
        (AUDIT_TABLE,),
    )
    assert row is not None
    name, superuser, audit_owner, owns = row
    return ConnectedRole(
        name=str(name),
        superuser=bool(superuser),
        audit_owner=str(audit_owner) if audit_owner is not None else None,
        owns_audit_log=bool(owns),
    )
