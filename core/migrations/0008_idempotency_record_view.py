"""Alliance operators read idempotency records in the admin (support: what became of a retried request)."""

from django.db import migrations

from core.roles import grant_permissions, model_permissions


def forwards(apps, schema_editor):
    grant_permissions(apps, {"Alliance operators": model_permissions("core.idempotencyrecord", ["view"])})


class Migration(migrations.Migration):
    dependencies = [("core", "0007_idempotency_interrupted"), ("auth", "0012_alter_user_first_name_max_length")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
