from django.db import migrations

from core.roles import grant_permissions, model_permissions

ALL = ("add", "change", "delete", "view")


def forwards(apps, schema_editor):
    grant_permissions(
        apps,
        {
            "Alliance operators": model_permissions("merchants.merchantapplication", ALL)
            + model_permissions("merchants.settlementaccount", ALL)
            + model_permissions("merchants.settlementaccountchange", ALL),
            "Bank operators": model_permissions("merchants.merchantapplication", ["view", "change"])
            + model_permissions("merchants.settlementaccount", ["view"])
            + model_permissions("merchants.settlementaccountchange", ["view", "add"]),
            "Bank auditors": model_permissions("merchants.merchantapplication", ["view"])
            + model_permissions("merchants.settlementaccount", ["view"])
            + model_permissions("merchants.settlementaccountchange", ["view"]),
        },
    )


class Migration(migrations.Migration):
    dependencies = [("merchants", "0005_onboarding"), ("core", "0004_operator_groups")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
