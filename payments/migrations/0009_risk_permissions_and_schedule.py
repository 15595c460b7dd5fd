from django.db import migrations

from core.roles import grant_permissions, model_permissions

ALL = ("add", "change", "delete", "view")


def forwards(apps, schema_editor):
    alliance = (
        model_permissions("payments.riskrule", ALL)
        + model_permissions("payments.riskblock", ALL)
        + model_permissions("payments.riskreview", ["view", "change"])
    )
    grant_permissions(
        apps,
        {
            "Alliance operators": alliance,
            "Bank operators": model_permissions("payments.riskreview", ["view", "change"]),
            "Bank auditors": model_permissions("payments.riskreview", ["view"]),
        },
    )
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    interval, _ = IntervalSchedule.objects.get_or_create(every=5, period="minutes")
    PeriodicTask.objects.get_or_create(
        name="Expire undecided risk reviews",
        defaults={"task": "payments.risk_reviews_expire", "interval": interval, "enabled": True},
    )


class Migration(migrations.Migration):
    dependencies = [("payments", "0008_risk"), ("django_celery_beat", "0019_alter_periodictasks_options")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
