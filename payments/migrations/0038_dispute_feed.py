"""The dispute poll: its place in each channel's feed of dispute notices, and its beat schedule."""

import django.db.models.deletion
from django.db import migrations, models

from core.roles import grant_permissions, model_permissions


def schedule(apps, schema_editor):
    """The dispute poll's beat schedule, every five minutes (created when missing, never overwritten)."""
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = IntervalSchedule.objects.get_or_create(every=5, period="minutes")
    PeriodicTask.objects.get_or_create(
        name="Poll the channels' dispute notices",
        defaults={"task": "payments.disputes_poll", "interval": every, "enabled": True},
    )


def permissions(apps, schema_editor):
    view = model_permissions("payments.disputefeedcursor", ["view"])
    grant_permissions(apps, {"Alliance operators": view, "Bank operators": view, "Bank auditors": view})


class Migration(migrations.Migration):

    dependencies = [
        ('payments', '0037_disputes_data'),
        ('django_celery_beat', '0019_alter_periodictasks_options'),
        ('core', '0004_operator_groups'),
    ]

    operations = [
        migrations.CreateModel(
            name='DisputeFeedCursor',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('position', models.BigIntegerField(default=0, verbose_name='feed position')),
                ('polled_at', models.DateTimeField(blank=True, null=True, verbose_name='last polled')),
                ('error', models.CharField(blank=True, max_length=200, verbose_name='last error')),
                ('channel', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='dispute_feed_cursor', to='payments.channel', verbose_name='channel')),
            ],
            options={
                'verbose_name': 'dispute feed cursor',
                'verbose_name_plural': 'dispute feed cursors',
            },
        ),
        migrations.RunPython(permissions, migrations.RunPython.noop),
        migrations.RunPython(schedule, migrations.RunPython.noop),
    ]
