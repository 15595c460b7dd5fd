"""The voucher expiry's beat schedule (created when missing, never overwritten) and the operators' permissions on
benefits (bank operators edit and publish their bank's, auditors read) and vouchers (read-only)."""

from django.db import migrations

from core.roles import grant_permissions, model_permissions


def schedules(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    five_minutes, _ = IntervalSchedule.objects.get_or_create(every=5, period="minutes")
    PeriodicTask.objects.get_or_create(
        name="Benefits: expire vouchers",
        defaults={"task": "rewards.vouchers_expire", "interval": five_minutes, "enabled": True},
    )


def permissions(apps, schema_editor):
    read = model_permissions("rewards.benefit", ["view"]) + model_permissions("rewards.voucher", ["view"])
    edit = model_permissions("rewards.benefit", ["add", "change"])
    grant_permissions(
        apps,
        {"Alliance operators": read + edit, "Bank operators": read + edit, "Bank auditors": read},
    )


class Migration(migrations.Migration):
    dependencies = [
        ("rewards", "0011_benefits_and_vouchers"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [
        migrations.RunPython(schedules, migrations.RunPython.noop),
        migrations.RunPython(permissions, migrations.RunPython.noop),
    ]
