"""Beat schedules for the ledger jobs (created when missing, never overwritten) and the operators' permissions."""

from django.db import migrations

from core.roles import grant_permissions, model_permissions

LEDGER = ("account", "ledgertransaction", "entry", "lot", "lotmovement", "hold", "seal")


def schedules(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    daily, _ = CrontabSchedule.objects.get_or_create(
        minute="10", hour="0", day_of_week="*", day_of_month="*", month_of_year="*", timezone="Asia/Shanghai"
    )
    five_minutes, _ = IntervalSchedule.objects.get_or_create(every=5, period="minutes")
    minute, _ = IntervalSchedule.objects.get_or_create(every=1, period="minutes")
    PeriodicTask.objects.get_or_create(
        name="Ledger: expire points lots", defaults={"task": "rewards.lots_expire", "crontab": daily, "enabled": True}
    )
    PeriodicTask.objects.get_or_create(
        name="Ledger: seal transactions",
        defaults={"task": "rewards.ledger_seal", "interval": five_minutes, "enabled": True},
    )
    PeriodicTask.objects.get_or_create(
        name="Ledger: expire holds", defaults={"task": "rewards.holds_expire", "interval": minute, "enabled": True}
    )


def permissions(apps, schema_editor):
    view = [perm for model in LEDGER for perm in model_permissions(f"rewards.{model}", ["view"])]
    adjust = model_permissions("rewards.adjustmentrequest", ["view", "add", "change"])
    grant_permissions(
        apps,
        {
            "Alliance operators": view + adjust,
            "Bank operators": view + adjust,
            "Bank auditors": view + model_permissions("rewards.adjustmentrequest", ["view"]),
        },
    )


class Migration(migrations.Migration):
    dependencies = [
        ("rewards", "0001_ledger"),
        ("core", "0005_beat_schedules"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [
        migrations.RunPython(schedules, migrations.RunPython.noop),
        migrations.RunPython(permissions, migrations.RunPython.noop),
    ]
