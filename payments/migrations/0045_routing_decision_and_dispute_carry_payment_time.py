"""Routing decisions and disputes carry their payment's created_at (`intent_created_at` / `payment_created_at`, as
attempts and fee splits do), backfilled here, so that once payments are partitioned by month every row naming a
payment names its month too. Backwards, the columns go.
"""

from django.db import migrations, models

REFERRERS = (
    ("payments_routingdecision", "intent_id", "intent_created_at"),
    ("payments_dispute", "payment_id", "payment_created_at"),
)

FORWARD = "".join(
    f"""
ALTER TABLE {table} ADD COLUMN {time_column} timestamptz;
UPDATE {table} r SET {time_column} = p.created_at FROM payments_paymentintent p WHERE p.id = r.{id_column};
ALTER TABLE {table} ALTER COLUMN {time_column} SET NOT NULL;
"""
    for table, id_column, time_column in REFERRERS
)

BACKWARD = "".join(
    f"ALTER TABLE {table} DROP COLUMN {time_column};\n" for table, _id_column, time_column in REFERRERS
)


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0044_ledger_references_carry_the_time"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="routingdecision",
                    name="intent_created_at",
                    field=models.DateTimeField(default=None, editable=False, verbose_name="intent created"),
                    preserve_default=False,
                ),
                migrations.AddField(
                    model_name="dispute",
                    name="payment_created_at",
                    field=models.DateTimeField(default=None, editable=False, verbose_name="intent created"),
                    preserve_default=False,
                ),
            ],
            database_operations=[migrations.RunSQL(FORWARD, BACKWARD)],
        ),
    ]
