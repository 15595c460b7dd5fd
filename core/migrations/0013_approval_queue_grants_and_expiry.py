"""Every operator role sees the approval queue (scoped to its banks); the expiry job runs every 15 minutes."""

from django.db import migrations

from core.roles import grant_permissions, model_permissions


def forwards(apps, schema_editor):
    view = model_permissions("core.approvalrequest", ["view"])
    grant_permissions(apps, {"Alliance operators": view, "Bank operators": view, "Bank auditors": view})
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = IntervalSchedule.objects.get_or_create(every=15, period="minutes")
    PeriodicTask.objects.get_or_create(
        name="Approvals: expire stale requests",
        defaults={"task": "core.approvals_expire", "interval": every, "enabled": True},
    )


class Migration(migrations.Migration):
    dependencies = [("core", "0012_approval_request"), ("django_celery_beat", "0019_alter_periodictasks_options")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
