"""The application's database role (core.db_roles, `manage.py db_roles`): it reads and writes the platform's tables,
may only read and append to the audit log, and cannot lift the log's append-only triggers; the deploy check warns
when the platform connects as a superuser or as the audit log's owner.

The suite connects as a superuser that owns every table, the owner here. Each test runs in a transaction that is
rolled back, and roles are created inside it, so a role never outlives its test (a unique name all the same, as roles
are shared by every database of the server, and each test drops what it made).
"""

from __future__ import annotations

import psycopg2.errors
import pytest
from django.core.checks import registry
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from psycopg2 import sql

from core.audit import audit_record
from core.checks import check_database_role
from core.models import AuditLog
from payments.models import Channel
from tests.factories import ChannelFactory, MemberBankFactory

pytestmark = pytest.mark.django_db


def _execute(statement: str | sql.Composable, params: tuple[object, ...] = ()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def _fetch(statement: str, params: tuple[object, ...] = ()) -> object:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        row = cursor.fetchone()
    assert row is not None
    return row[0]


def _holds(role: str, table: str, privilege: str) -> bool:
    return bool(_fetch("SELECT has_table_privilege(%s, %s, %s)", (role, table, privilege)))


def _as(role: str) -> None:
    _execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))


def _refused(statement: str) -> str:
    """The statement fails with SQLSTATE 42501 (insufficient privilege); returns PostgreSQL's message."""
    with pytest.raises(DatabaseError) as caught, transaction.atomic():
        _execute(statement)
    assert isinstance(caught.value.__cause__, psycopg2.errors.InsufficientPrivilege), caught.value
    return str(caught.value)


def test_app_role_appends_to_the_audit_log_but_cannot_change_it_or_its_triggers(role_name: str) -> None:
    bank = MemberBankFactory()
    call_command("db_roles", "--app-role", role_name)
    _as(role_name)
    try:
        entry = audit_record(actor=None, action="roles.inserted")
        assert AuditLog.objects.filter(pk=entry.pk, action="roles.inserted").exists()

        # Refused by the role's privileges, before the append-only triggers are reached.
        assert "permission denied for table core_auditlog" in _refused("UPDATE core_auditlog SET reason = 'forged'")
        assert "permission denied for table core_auditlog" in _refused("DELETE FROM core_auditlog")
        assert "permission denied for table core_auditlog" in _refused("TRUNCATE core_auditlog")
        assert "must be owner" in _refused("ALTER TABLE core_auditlog DISABLE TRIGGER core_auditlog_no_update_delete")
        assert "must be owner" in _refused("ALTER TABLE core_auditlog DISABLE TRIGGER ALL")
        assert "must be owner" in _refused("DROP TRIGGER core_auditlog_no_truncate ON core_auditlog")
        assert "must be owner" in _refused("ALTER TABLE core_auditlog OWNER TO CURRENT_USER")
        assert "permission denied" in _refused("CREATE TABLE roles_smuggled (id int)")

        # An ordinary table: insert, update, delete, through the ORM and its sequences.
        channel = ChannelFactory(acquirer=bank)
        assert Channel.objects.filter(pk=channel.pk).update(name="Renamed") == 1
        assert Channel.objects.get(pk=channel.pk).name == "Renamed"
        assert Channel.objects.filter(pk=channel.pk).delete()[0] == 1
    finally:
        _execute("RESET ROLE")
    assert AuditLog.objects.get(pk=entry.pk).reason == ""
    assert _fetch("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'core_auditlog'::regclass AND tgenabled = 'O'") == 2


def test_app_role_holds_exactly_its_grants_and_tables_created_later_get_them_too(role_name: str) -> None:
    call_command("db_roles", "--app-role", role_name)
    for privilege in ("SELECT", "INSERT"):
        assert _holds(role_name, "core_auditlog", privilege)
    for privilege in ("UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"):
        assert not _holds(role_name, "core_auditlog", privilege), privilege
    for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE"):
        assert _holds(role_name, "payments_paymentintent", privilege), privilege
    for privilege in ("TRUNCATE", "REFERENCES", "TRIGGER"):
        assert not _holds(role_name, "payments_paymentintent", privilege), privilege
    assert not _fetch("SELECT has_schema_privilege(%s, current_schema(), 'CREATE')", (role_name,))
    assert _fetch("SELECT rolcanlogin AND NOT rolsuper FROM pg_roles WHERE rolname = %s", (role_name,))

    # A later migration's table (created by the owner) is granted by default privileges.
    _execute("CREATE TABLE roles_later (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, note text)")
    _as(role_name)
    try:
        _execute("INSERT INTO roles_later (note) VALUES ('new')")
        _execute("UPDATE roles_later SET note = 'changed'")
        _execute("DELETE FROM roles_later")
    finally:
        _execute("RESET ROLE")
    assert not _holds(role_name, "roles_later", "TRUNCATE")


def test_running_again_narrows_the_audit_log_grant_a_migration_widened(role_name: str) -> None:
    call_command("db_roles", "--app-role", role_name)
    # What default privileges would give a rebuilt audit table, or a grant made by hand.
    _execute(sql.SQL("GRANT ALL ON core_auditlog TO {}").format(sql.Identifier(role_name)))
    assert _holds(role_name, "core_auditlog", "UPDATE")

    call_command("db_roles", "--app-role", role_name)

    assert not _holds(role_name, "core_auditlog", "UPDATE")
    assert not _holds(role_name, "core_auditlog", "TRIGGER")
    assert _holds(role_name, "core_auditlog", "INSERT")
    assert _holds(role_name, "payments_paymentintent", "UPDATE")


def test_password_comes_from_the_named_environment_variable(role_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROLES_TEST_PASSWORD", raising=False)
    with pytest.raises(CommandError, match="ROLES_TEST_PASSWORD is not set"):
        call_command("db_roles", "--app-role", role_name, "--password-env", "ROLES_TEST_PASSWORD")
    assert not _fetch("SELECT count(*) FROM pg_roles WHERE rolname = %s", (role_name,))

    monkeypatch.setenv("ROLES_TEST_PASSWORD", "s3cret-app-password")
    call_command("db_roles", "--app-role", role_name, "--password-env", "ROLES_TEST_PASSWORD")
    stored = str(_fetch("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role_name,)))
    assert stored.startswith(("SCRAM-SHA-256$", "md5"))
    assert "s3cret-app-password" not in stored


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("CREATE ROLE {role} SUPERUSER", "is a superuser"),
        ("CREATE ROLE {role}; CREATE TABLE roles_owned (id int); ALTER TABLE roles_owned OWNER TO {role}", "owns 1"),
        ("CREATE ROLE {role}; GRANT UPDATE ON core_auditlog TO PUBLIC", "still holds UPDATE on core_auditlog"),
    ],
    ids=["superuser", "owns-a-table", "update-through-public"],
)
def test_refuses_a_role_that_could_get_round_the_audit_log_and_grants_nothing(
    role_name: str, setup: str, message: str
) -> None:
    _execute(setup.format(role=role_name))  # a plain identifier: letters, digits and underscores
    with pytest.raises(CommandError, match=message):
        call_command("db_roles", "--app-role", role_name)
    granted = "SELECT count(*) FROM {}, aclexplode({}) AS acl WHERE acl.grantee = %s::regrole"
    assert _fetch(granted.format("pg_class", "relacl"), (role_name,)) == 0
    assert _fetch(granted.format("pg_namespace", "nspacl"), (role_name,)) == 0
    assert _fetch(granted.format("pg_default_acl", "defaclacl"), (role_name,)) == 0


def test_refuses_the_connected_role_itself() -> None:
    current = str(_fetch("SELECT current_user"))
    with pytest.raises(CommandError, match="the application role must be another one"):
        call_command("db_roles", "--app-role", current)


def test_refuses_a_database_that_is_not_migrated(role_name: str) -> None:
    _execute("ALTER TABLE core_auditlog RENAME TO core_auditlog_elsewhere")
    with pytest.raises(CommandError, match=r"core_auditlog does not exist .*: run migrate first"):
        call_command("db_roles", "--app-role", role_name)
    assert not _fetch("SELECT count(*) FROM pg_roles WHERE rolname = %s", (role_name,))


def test_deploy_check_warns_for_a_superuser_or_the_audit_log_owner_and_not_for_the_app_role(role_name: str) -> None:
    assert check_database_role in registry.registry.get_checks(include_deployment_checks=True)
    assert check_database_role not in registry.registry.get_checks()

    assert [message.id for message in check_database_role()] == ["core.W001"]

    call_command("db_roles", "--app-role", role_name)
    _as(role_name)
    try:
        assert check_database_role() == []
    finally:
        _execute("RESET ROLE")

    owner = f"{role_name}_owner"
    _execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(owner)))
    try:
        _execute(sql.SQL("ALTER TABLE core_auditlog OWNER TO {}").format(sql.Identifier(owner)))
        _as(owner)
        try:
            warnings = check_database_role()
        finally:
            _execute("RESET ROLE")
        assert [message.id for message in warnings] == ["core.W002"]
        assert f"'{owner}' owns core_auditlog" in warnings[0].msg
    finally:
        _execute("ALTER TABLE core_auditlog OWNER TO CURRENT_USER")
        _execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(owner)))
        _execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(owner)))
