"""The payments services write their events with each change (the outbox), jobs and the admin included: the
once-a-minute `payments.events_catch_up` goes, and its schedule with it."""

from django.db import migrations


def forwards(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(task="payments.events_catch_up").delete()


def backwards(apps, schema_editor):
    from importlib import import_module

    import_module("merchants.migrations.0007_events_catch_up_schedule").forwards(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [("merchants", "0010_event_object_id")]
    operations = [migrations.RunPython(forwards, backwards)]
