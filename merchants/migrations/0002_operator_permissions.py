from django.db import migrations

from core.roles import grant_permissions, model_permissions

ALL = ("add", "change", "delete", "view")


def forwards(apps, schema_editor):
    grant_permissions(
        apps,
        {
            "Alliance operators": model_permissions("merchants.merchant", ALL),
            "Bank operators": model_permissions("merchants.merchant", ["view", "change"]),
            "Bank auditors": model_permissions("merchants.merchant", ["view"]),
        },
    )


class Migration(migrations.Migration):
    dependencies = [("merchants", "0001_initial"), ("core", "0004_operator_groups")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
