"""The schedule of `payments.events_catch_up` (webhook events for changes the payment jobs make).

It lives here, with the other webhook schedule, so the payments app's migrations stay its own; the task is named by
string only, so nothing is imported across the apps' direction.
"""

from django.db import migrations


def forwards(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    interval, _ = IntervalSchedule.objects.get_or_create(every=1, period="minutes")
    PeriodicTask.objects.get_or_create(
        name="Webhook events for payment jobs' changes",
        defaults={"task": "payments.events_catch_up", "interval": interval, "enabled": True},
    )


class Migration(migrations.Migration):
    dependencies = [("merchants", "0006_onboarding_permissions")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
