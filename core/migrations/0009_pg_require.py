"""PostgreSQL only: `mengka_require(ok, message)`, true when `ok`, else an error with `message` (SQLSTATE P0001): a
statement states a condition its writes depend on (a guarded move that must have moved its row), and writes nothing
when it does not hold."""

from django.db import migrations

FUNCTION = r"""
CREATE OR REPLACE FUNCTION mengka_require(ok boolean, message text) RETURNS boolean
LANGUAGE plpgsql AS $fn$
BEGIN
    IF ok IS NOT TRUE THEN
        RAISE EXCEPTION '%', message USING ERRCODE = 'P0001';
    END IF;
    RETURN true;
END
$fn$;
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTION, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP FUNCTION IF EXISTS mengka_require(boolean, text)")


class Migration(migrations.Migration):
    dependencies = [("core", "0008_idempotency_record_view")]
    operations = [migrations.RunPython(forwards, backwards)]
