"""`mengka_require` served statements that wrote a capture together with a request's stored outcome; captures are
ordinary transactions now, and the function goes."""

from django.db import migrations


def recreate(apps, schema_editor):
    import importlib

    importlib.import_module("core.migrations.0009_pg_require").forwards(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [("core", "0009_pg_require")]
    operations = [
        migrations.RunSQL("DROP FUNCTION IF EXISTS mengka_require(boolean, text)", reverse_sql=migrations.RunSQL.noop),
        migrations.RunPython(migrations.RunPython.noop, recreate),
    ]
