"""Payment jobs' schedules. Created when missing, never overwritten: operators edit schedules in the admin."""

from django.db import migrations

SCHEDULES = [
    ("Resolve unknown payment attempts", "payments.attempts_resolve", 1),
    ("Expire payment authorisations", "payments.authorizations_expire", 5),
    ("Sweep channels for orphan charges", "payments.orphans_sweep", 15),
    ("Probe channel health", "payments.channels_probe", 1),
]


def forwards(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, minutes in SCHEDULES:
        interval, _ = IntervalSchedule.objects.get_or_create(every=minutes, period="minutes")
        PeriodicTask.objects.get_or_create(name=name, defaults={"task": task, "interval": interval, "enabled": True})


class Migration(migrations.Migration):
    dependencies = [("payments", "0002_operator_permissions"), ("django_celery_beat", "0019_alter_periodictasks_options")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
