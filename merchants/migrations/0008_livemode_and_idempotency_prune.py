"""Events, webhook endpoints and stores record the mode of the key that made them; existing ones are live.

And the schedule of `core.idempotency_prune`, which keeps the merchant API's idempotency promise (replay for at least
24 hours) without keeping every key for ever. It lives here, beside the API's other schedules, because the API makes
the promise; the task is named by string only. Created when missing, never overwritten: operators edit schedules in
the admin.
"""

from django.db import migrations, models

LIVEMODE_HELP = "Unticked: made with a test key, in the sandbox."


def schedule_idempotency_prune(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    interval, _ = IntervalSchedule.objects.get_or_create(every=1, period="hours")
    PeriodicTask.objects.get_or_create(
        name="Prune idempotency records",
        defaults={"task": "core.idempotency_prune", "interval": interval, "enabled": True},
    )


class Migration(migrations.Migration):
    dependencies = [
        ("merchants", "0007_events_catch_up_schedule"),
        ("core", "0006_idempotencyrecord"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.AddField(
            model_name="event",
            name="livemode",
            field=models.BooleanField(default=True, help_text=LIVEMODE_HELP, verbose_name="live mode"),
        ),
        migrations.AddField(
            model_name="store",
            name="livemode",
            field=models.BooleanField(default=True, help_text=LIVEMODE_HELP, verbose_name="live mode"),
        ),
        migrations.AddField(
            model_name="webhookendpoint",
            name="livemode",
            field=models.BooleanField(
                default=True, help_text="Receives the events of this mode only.", verbose_name="live mode"
            ),
        ),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(fields=["merchant", "livemode", "-id"], name="merchants_e_merchan_ce9882_idx"),
        ),
        migrations.RemoveIndex(model_name="event", name="merchants_e_merchan_d6d402_idx"),
        migrations.AddConstraint(
            model_name="store",
            constraint=models.UniqueConstraint(
                fields=("merchant", "livemode", "code"), name="store_code_unique_per_merchant_mode"
            ),
        ),
        migrations.RemoveConstraint(model_name="store", name="store_code_unique_per_merchant"),
        migrations.RunPython(schedule_idempotency_prune, migrations.RunPython.noop),
    ]
