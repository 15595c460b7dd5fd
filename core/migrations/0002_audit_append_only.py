"""The audit log is append-only: the database itself refuses UPDATE, DELETE and TRUNCATE on it."""

from django.db import migrations

PG_UP = """
CREATE OR REPLACE FUNCTION core_auditlog_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'core_auditlog is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER core_auditlog_no_update_delete BEFORE UPDATE OR DELETE ON core_auditlog
    FOR EACH ROW EXECUTE FUNCTION core_auditlog_refuse_change();
CREATE TRIGGER core_auditlog_no_truncate BEFORE TRUNCATE ON core_auditlog
    FOR EACH STATEMENT EXECUTE FUNCTION core_auditlog_refuse_change();
"""
PG_DOWN = """
DROP TRIGGER IF EXISTS core_auditlog_no_truncate ON core_auditlog;
DROP TRIGGER IF EXISTS core_auditlog_no_update_delete ON core_auditlog;
DROP FUNCTION IF EXISTS core_auditlog_refuse_change();
"""


def install_guard(connection):
    """Creates the triggers (also used by the test suite to restore them after a flush)."""
    with connection.cursor() as cursor:
        cursor.execute(PG_DOWN + PG_UP)


def remove_guard(connection):
    with connection.cursor() as cursor:
        cursor.execute(PG_DOWN)


def forwards(apps, schema_editor):
    install_guard(schema_editor.connection)


def backwards(apps, schema_editor):
    remove_guard(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("core", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
