"""Payouts: the channel that carries a sponsor bank's payouts, who may see and release them, and their schedules
(created when missing, never overwritten: operators edit schedules in the admin)."""

from django.db import migrations, models

from core.roles import grant_permissions, model_permissions

SCHEDULES = [
    ("Make and send payouts", "payments.payouts_send", 5),
    ("Poll sent payouts", "payments.payouts_poll", 1),
]


def forwards(apps, schema_editor):
    view = model_permissions("payments.payout", ["view"]) + model_permissions("payments.settlementbatch", ["view"])
    grant_permissions(apps, {"Alliance operators": view, "Bank operators": view, "Bank auditors": view})
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, minutes in SCHEDULES:
        interval, _ = IntervalSchedule.objects.get_or_create(every=minutes, period="minutes")
        PeriodicTask.objects.get_or_create(name=name, defaults={"task": task, "interval": interval, "enabled": True})


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0027_settlement"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.AddField(
            model_name="channel",
            name="payouts",
            field=models.BooleanField(
                default=False,
                help_text=(
                    "Its acquirer's licensed channel for paying settlements to the merchants it sponsors (no 二清): a "
                    "merchant's payouts go through the enabled one of its sponsor bank that takes the currency."
                ),
                verbose_name="carries payouts",
            ),
        ),
        migrations.RunPython(forwards, migrations.RunPython.noop),
    ]
