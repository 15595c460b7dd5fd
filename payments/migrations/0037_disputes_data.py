"""Disputes' data: who may read and act on the dispute queue, and the expiry job's beat schedule (created when
missing, never overwritten)."""

from django.db import migrations

from core.roles import grant_permissions, model_permissions


def permissions(apps, schema_editor):
    # Operators open disputes, record outcomes and send answers (`add`, `change`); auditors read them and the evidence.
    disputes = model_permissions("payments.dispute", ["view", "add", "change"])
    evidence = model_permissions("payments.disputeevidence", ["view"])
    grant_permissions(
        apps,
        {
            "Alliance operators": disputes + evidence,
            "Bank operators": disputes + evidence,
            "Bank auditors": model_permissions("payments.dispute", ["view"]) + evidence,
        },
    )


def schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = IntervalSchedule.objects.get_or_create(every=1, period="hours")
    PeriodicTask.objects.get_or_create(
        name="Expire unanswered disputes",
        defaults={"task": "payments.disputes_expire", "interval": every, "enabled": True},
    )


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0036_disputes"),
        ("core", "0004_operator_groups"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [
        migrations.RunPython(permissions, migrations.RunPython.noop),
        migrations.RunPython(schedule, migrations.RunPython.noop),
    ]
