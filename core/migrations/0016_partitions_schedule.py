"""The monthly partitions' job runs daily. Created when missing, never overwritten: operators edit it in the admin."""

from django.db import migrations


def forwards(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="20", hour="3", day_of_week="*", day_of_month="*", month_of_year="*", timezone="Asia/Shanghai"
    )
    PeriodicTask.objects.get_or_create(
        name="Monthly partitions",
        defaults={"task": "core.partitions_maintain", "crontab": crontab, "enabled": True},
    )


def backwards(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task="core.partitions_maintain").delete()


class Migration(migrations.Migration):
    dependencies = [("core", "0015_monthly_partitions"), ("django_celery_beat", "0018_improve_crontab_helptext")]
    operations = [migrations.RunPython(forwards, backwards)]
