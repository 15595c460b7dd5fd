from django.db import migrations

from core.roles import grant_permissions, model_permissions


def forwards(apps, schema_editor):
    grant_permissions(
        apps,
        {
            "Alliance operators": model_permissions("merchants.keydelivery", ["view"]),
            "Bank operators": model_permissions("merchants.keydelivery", ["view"]),
            "Bank auditors": model_permissions("merchants.keydelivery", ["view"]),
        },
    )


class Migration(migrations.Migration):
    dependencies = [("merchants", "0013_key_delivery"), ("core", "0004_operator_groups")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
