from django.db import migrations

from core.roles import grant_permissions, model_permissions

ALL = ("add", "change", "delete", "view")


def forwards(apps, schema_editor):
    alliance = []
    for label in ("payments.routingrule", "payments.rulechannel", "payments.channelerrorpolicy", "payments.routingdecision"):
        alliance += model_permissions(label, ALL)
    bank = model_permissions("payments.routingdecision", ["view"])
    grant_permissions(apps, {"Alliance operators": alliance, "Bank operators": bank, "Bank auditors": bank})


class Migration(migrations.Migration):
    dependencies = [("payments", "0004_routing")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
