from django.db import migrations

from core.roles import grant_permissions, model_permissions

ALL = ("add", "change", "delete", "view")


def forwards(apps, schema_editor):
    grant_permissions(
        apps,
        {
            "Alliance operators": model_permissions("members.memberbank", ALL)
            + model_permissions("members.bankoperator", ALL),
            "Bank operators": model_permissions("members.memberbank", ["view"])
            + model_permissions("members.bankoperator", ["view"]),
            "Bank auditors": model_permissions("members.memberbank", ["view"])
            + model_permissions("members.bankoperator", ["view"]),
        },
    )


class Migration(migrations.Migration):
    dependencies = [("members", "0001_initial"), ("core", "0004_operator_groups")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
