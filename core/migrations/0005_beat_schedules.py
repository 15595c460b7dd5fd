"""The platform's own beat schedule. Created when missing, never overwritten: operators edit schedules in the admin."""

from django.db import migrations


def forwards(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="5", hour="6", day_of_week="*", day_of_month="*", month_of_year="*", timezone="Asia/Shanghai"
    )
    PeriodicTask.objects.get_or_create(
        name="Business calendar coverage",
        defaults={"task": "core.calendar_coverage", "crontab": crontab, "enabled": True},
    )


class Migration(migrations.Migration):
    dependencies = [("core", "0004_operator_groups")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
