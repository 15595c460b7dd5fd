from django.db import migrations

from core.roles import grant_permissions, model_permissions


def forwards(apps, schema_editor):
    view = model_permissions("payments.paymentcode", ["view"]) + model_permissions("payments.agreement", ["view"])
    grant_permissions(apps, {"Alliance operators": view, "Bank operators": view, "Bank auditors": view})


class Migration(migrations.Migration):
    dependencies = [("payments", "0010_payment_methods")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
