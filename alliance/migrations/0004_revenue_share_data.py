"""The monthly revenue share's beat schedule (created when missing, never overwritten) and the operators'
permissions: alliance operators keep the policies, membership fees and running costs and read every run and
statement; bank operators and auditors read statements (the admin shows them only their own bank's)."""

from django.db import migrations

from core.roles import grant_permissions, model_permissions


def schedules(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    third_of_month, _ = CrontabSchedule.objects.get_or_create(
        minute="0",
        hour="3",
        day_of_week="*",
        day_of_month="3",
        month_of_year="*",
        timezone="Asia/Shanghai",
    )
    PeriodicTask.objects.get_or_create(
        name="Revenue share: the previous month",
        defaults={"task": "alliance.revenue_share_monthly", "crontab": third_of_month, "enabled": True},
    )


def permissions(apps, schema_editor):
    kept = [
        *model_permissions("alliance.revenuesharepolicy", ["view", "add", "change"]),
        *model_permissions("alliance.membershipfee", ["view", "add", "change"]),
        *model_permissions("alliance.alliancecost", ["view", "add", "change", "delete"]),
    ]
    read = model_permissions("alliance.revenuesharerun", ["view"])
    statements = model_permissions("alliance.revenuesharestatement", ["view"])
    grant_permissions(
        apps,
        {
            "Alliance operators": kept + read + statements,
            "Bank operators": statements,
            "Bank auditors": statements,
        },
    )


class Migration(migrations.Migration):
    dependencies = [
        ("alliance", "0003_revenue_share"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [
        migrations.RunPython(schedules, migrations.RunPython.noop),
        migrations.RunPython(permissions, migrations.RunPython.noop),
    ]
