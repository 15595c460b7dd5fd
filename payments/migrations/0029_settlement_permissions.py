from django.db import migrations

from core.roles import grant_permissions, model_permissions

ALL = ("add", "change", "delete", "view")


def forwards(apps, schema_editor):
    # Batches and their split instructions are written by the settlement run: every role reads them (a bank its own
    # merchants'). Reserve policies are the alliance's to set and every bank's to read.
    view = model_permissions("payments.settlementbatch", ["view"]) + model_permissions(
        "payments.splitinstruction", ["view"]
    )
    reserve_view = model_permissions("payments.reservepolicy", ["view"])
    grant_permissions(
        apps,
        {
            "Alliance operators": view + model_permissions("payments.reservepolicy", ALL),
            "Bank operators": view + reserve_view,
            "Bank auditors": view + reserve_view,
        },
    )


class Migration(migrations.Migration):
    dependencies = [("payments", "0028_payouts"), ("core", "0004_operator_groups")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
