"""An event's created_at is set by the outbox, with the time its public id carries (core.ids): a plain default
now, not auto_now_add, which would set it again on save. No change in the database."""

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("merchants", "0020_events_and_deliveries_partitioned"),
    ]

    operations = [
        migrations.AlterField(
            model_name="event",
            name="created_at",
            field=models.DateTimeField(
                db_index=True, default=django.utils.timezone.now, editable=False, verbose_name="created"
            ),
        ),
    ]
