"""Reconciliation's data: who may read and act on the statements and the exceptions queue, the job's beat schedule
(created when missing, never overwritten), and the demo channels' statement formats as the simulator writes them."""

from django.db import migrations

from core.roles import grant_permissions, model_permissions

# The simulator's channels and the layout each writes its statement in (simulator/channels.json).
FORMATS = {
    "acq-unionpay-a": "csv_v1",
    "acq-bank-b": "csv_v2",
    "acq-global-c": "fixed_v1",
    "debit-icbc": "csv_v2",
    "debit-cmb": "fixed_v1",
    "wallet-x": "csv_v1",
    "prepaid-x": "csv_v2",
    "ecny-x": "fixed_v1",
}


def permissions(apps, schema_editor):
    # Imports are written by the job and read by every role (a bank its own channels'); exceptions are acted on by
    # operators (the actions need `change`) and read by auditors.
    imports = model_permissions("payments.statementimport", ["view"])
    exceptions = model_permissions("payments.reconciliationexception", ["view", "change"])
    grant_permissions(
        apps,
        {
            "Alliance operators": imports + exceptions,
            "Bank operators": imports + exceptions,
            "Bank auditors": imports + model_permissions("payments.reconciliationexception", ["view"]),
        },
    )


def schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = IntervalSchedule.objects.get_or_create(every=15, period="minutes")
    PeriodicTask.objects.get_or_create(
        name="Reconcile channel statements",
        defaults={"task": "payments.reconcile", "interval": every, "enabled": True},
    )


def formats(apps, schema_editor):
    Channel = apps.get_model("payments", "Channel")
    for remote, layout in FORMATS.items():
        Channel.objects.filter(connector="simulator", remote_id=remote, statement_format="csv_v1").update(
            statement_format=layout
        )


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0032_reconciliation"),
        ("core", "0004_operator_groups"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [
        migrations.RunPython(permissions, migrations.RunPython.noop),
        migrations.RunPython(schedule, migrations.RunPython.noop),
        migrations.RunPython(formats, migrations.RunPython.noop),
    ]
