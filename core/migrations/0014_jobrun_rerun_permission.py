"""Job runs: bank operators and auditors watch the shared jobs' runs; alliance operators may run a job again."""

from django.db import migrations

from core.roles import grant_permissions


def forwards(apps, schema_editor):
    grant_permissions(
        apps,
        {
            "Alliance operators": ["core.rerun_jobrun"],
            "Bank operators": ["core.view_jobrun"],
            "Bank auditors": ["core.view_jobrun"],
        },
    )


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0013_approval_queue_grants_and_expiry"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="jobrun",
            options={
                "ordering": ("-started_at", "-id"),
                "permissions": [("rerun_jobrun", "Can run a job again")],
                "verbose_name": "job run",
                "verbose_name_plural": "job runs",
            },
        ),
        migrations.RunPython(forwards, migrations.RunPython.noop),
    ]
