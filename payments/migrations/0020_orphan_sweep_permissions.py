from django.db import migrations

from core.roles import grant_permissions, model_permissions


def forwards(apps, schema_editor):
    view = model_permissions("payments.journalcursor", ["view"]) + model_permissions("payments.unmatchedcharge", ["view"])
    grant_permissions(apps, {"Alliance operators": view, "Bank operators": view, "Bank auditors": view})


class Migration(migrations.Migration):
    dependencies = [("payments", "0019_orphan_sweep_cursor")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
