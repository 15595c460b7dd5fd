"""A payment's created_at is set by the code (default: now), not at the insert: the services give it the instant its
timed public id carries. No change in the database."""

from django.db import migrations, models

import payments.models


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0045_routing_decision_and_dispute_carry_payment_time"),
    ]

    operations = [
        migrations.AlterField(
            model_name="paymentintent",
            name="created_at",
            field=models.DateTimeField(
                db_index=True, default=payments.models.created_now, editable=False, verbose_name="created"
            ),
        ),
    ]
