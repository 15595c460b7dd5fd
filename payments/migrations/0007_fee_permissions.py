from django.db import migrations

from core.roles import grant_permissions, model_permissions

ALL = ("add", "change", "delete", "view")


def forwards(apps, schema_editor):
    alliance = model_permissions("payments.feeschedule", ALL) + model_permissions("payments.feesplit", ["view"])
    bank = model_permissions("payments.feesplit", ["view"])
    grant_permissions(apps, {"Alliance operators": alliance, "Bank operators": bank, "Bank auditors": bank})


class Migration(migrations.Migration):
    dependencies = [("payments", "0006_fees")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
