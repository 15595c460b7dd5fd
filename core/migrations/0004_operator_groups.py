"""Operator groups; alliance operators may do everything on the platform's own tables and the job schedules."""

from django.db import migrations

from core.roles import grant_permissions, model_permissions

ALL = ("add", "change", "delete", "view")


def forwards(apps, schema_editor):
    alliance = []
    for label in ("core.calendarday",):
        alliance += model_permissions(label, ALL)
    alliance += model_permissions("core.auditlog", ["view"]) + model_permissions("core.jobrun", ["view"])
    for label in (
        "auth.user",
        "auth.group",
        "django_celery_beat.periodictask",
        "django_celery_beat.crontabschedule",
        "django_celery_beat.intervalschedule",
        "django_celery_beat.clockedschedule",
        "django_celery_beat.solarschedule",
    ):
        alliance += model_permissions(label, ALL)
    bank = model_permissions("core.auditlog", ["view"])
    grant_permissions(apps, {"Alliance operators": alliance, "Bank operators": bank, "Bank auditors": bank})


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0003_business_calendar"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
