"""Clearing's beat schedules (created when missing, never overwritten: operators edit them in the admin) and the
operators' permissions: runs are the alliance's; positions, components and instructions every role reads (a bank
its own)."""

from django.db import migrations

from core.roles import grant_permissions, model_permissions


def schedules(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    half_past_one, _ = CrontabSchedule.objects.get_or_create(
        minute="30", hour="1", day_of_week="*", day_of_month="*", month_of_year="*", timezone="Asia/Shanghai"
    )
    two_minutes, _ = IntervalSchedule.objects.get_or_create(every=2, period="minutes")
    PeriodicTask.objects.get_or_create(
        name="Clearing: net the days due and send the instructions",
        defaults={"task": "alliance.clearing_daily", "crontab": half_past_one, "enabled": True},
    )
    PeriodicTask.objects.get_or_create(
        name="Clearing: ask about sent instructions",
        defaults={"task": "alliance.clearing_poll", "interval": two_minutes, "enabled": True},
    )


def permissions(apps, schema_editor):
    read = (
        model_permissions("alliance.clearingposition", ["view"])
        + model_permissions("alliance.clearingcomponent", ["view"])
        + model_permissions("alliance.clearinginstruction", ["view"])
    )
    grant_permissions(
        apps,
        {
            "Alliance operators": read + model_permissions("alliance.clearingrun", ["view"]),
            "Bank operators": read,
            "Bank auditors": read,
        },
    )


class Migration(migrations.Migration):
    dependencies = [
        ("alliance", "0001_clearing"),
        ("core", "0004_operator_groups"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [
        migrations.RunPython(schedules, migrations.RunPython.noop),
        migrations.RunPython(permissions, migrations.RunPython.noop),
    ]
