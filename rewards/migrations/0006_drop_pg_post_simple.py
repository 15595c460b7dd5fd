"""The ledger posts in Python only (rewards.services): the PL/pgSQL copies of the earn and redeem rules go."""

from django.db import migrations

ARGUMENTS = "text, text, text, bigint, text, bigint, integer, bigint, date, date, bigint, jsonb"


def recreate(apps, schema_editor):
    import importlib

    for name in ("0003_pg_post_simple", "0004_pg_post_simple_expired_lots", "0005_pg_post_simple_or_raise"):
        importlib.import_module(f"rewards.migrations.{name}").forwards(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [("rewards", "0005_pg_post_simple_or_raise")]
    operations = [
        migrations.RunSQL(
            [
                f"DROP FUNCTION IF EXISTS rewards_post_simple_or_raise({ARGUMENTS})",
                f"DROP FUNCTION IF EXISTS rewards_post_simple({ARGUMENTS})",
            ],
            reverse_sql=migrations.RunSQL.noop,
        ),
        migrations.RunPython(migrations.RunPython.noop, recreate),
    ]
