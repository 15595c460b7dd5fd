from django.db import migrations

from core.roles import grant_permissions, model_permissions

ALL = ("add", "change", "delete", "view")
MODELS = ("apikey", "store", "webhookendpoint", "event", "webhookdelivery")


def _perms(actions):
    permissions = []
    for model in MODELS:
        permissions += model_permissions(f"merchants.{model}", actions)
    return permissions


def forwards(apps, schema_editor):
    grant_permissions(
        apps,
        {
            "Alliance operators": _perms(ALL),
            "Bank operators": _perms(["view", "change"]),
            "Bank auditors": _perms(["view"]),
        },
    )
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    interval, _ = IntervalSchedule.objects.get_or_create(every=1, period="minutes")
    PeriodicTask.objects.get_or_create(
        name="Retry webhook deliveries",
        defaults={"task": "merchants.webhooks_retry", "interval": interval, "enabled": True},
    )


class Migration(migrations.Migration):
    dependencies = [
        ("merchants", "0003_api_keys_stores_webhooks"),
        ("core", "0004_operator_groups"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
