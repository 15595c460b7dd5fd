from django.db import migrations

from core.roles import grant_permissions, model_permissions

ALL = ("add", "change", "delete", "view")
MODELS = ("payments.channel", "payments.paymentintent", "payments.paymentattempt", "payments.refund")


def forwards(apps, schema_editor):
    alliance, bank = [], []
    for label in MODELS:
        alliance += model_permissions(label, ALL)
        bank += model_permissions(label, ["view"])
    grant_permissions(apps, {"Alliance operators": alliance, "Bank operators": bank, "Bank auditors": bank})


class Migration(migrations.Migration):
    dependencies = [("payments", "0001_initial"), ("core", "0004_operator_groups")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
