"""A payment's points spend and a reconciliation exception's write-off refer to a ledger transaction, whose table is
partitioned by month since rewards' migration 0023: each carries the transaction's time in a new column,
`points_spend_created_at` / `write_off_transaction_created_at` (backfilled here), and refers to the transaction's
`(id, created_at)` in a composite foreign key, ON UPDATE CASCADE; a reference and its time are both set or both
empty (a check). The models' fields make no constraint of their own (`db_constraint=False`). Backwards, the columns
go, and rewards' 0023 backwards puts the single-column keys back.
"""

from django.db import migrations, models

REFERRERS = [
    ("payments_paymentintent", "points_spend_id", "points_spend_created_at"),
    ("payments_reconciliationexception", "write_off_transaction_id", "write_off_transaction_created_at"),
]

FORWARD = "SET CONSTRAINTS ALL IMMEDIATE;\n" + "\n".join(
    f"""
ALTER TABLE {table} ADD COLUMN {time_column} timestamptz;
UPDATE {table} r SET {time_column} = t.created_at FROM rewards_ledgertransaction t WHERE t.id = r.{id_column};
ALTER TABLE {table} ADD CONSTRAINT {table}_{time_column}_set CHECK (({id_column} IS NULL) = ({time_column} IS NULL));
ALTER TABLE {table} ADD CONSTRAINT {table}_{id_column}_fk FOREIGN KEY ({id_column}, {time_column})
    REFERENCES rewards_ledgertransaction (id, created_at) ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED;
"""
    for table, id_column, time_column in REFERRERS
)

BACKWARD = "\n".join(
    f"""
ALTER TABLE {table} DROP CONSTRAINT {table}_{id_column}_fk;
ALTER TABLE {table} DROP CONSTRAINT {table}_{time_column}_set;
ALTER TABLE {table} DROP COLUMN {time_column};
"""
    for table, id_column, time_column in REFERRERS
)


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0043_refund_intent_created_at_partitioned"),
        ("rewards", "0023_ledger_transactions_partitioned"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="paymentintent",
                    name="points_spend_created_at",
                    field=models.DateTimeField(blank=True, editable=False, null=True, verbose_name="points spend's time"),
                ),
                migrations.AddField(
                    model_name="reconciliationexception",
                    name="write_off_transaction_created_at",
                    field=models.DateTimeField(
                        blank=True, editable=False, null=True, verbose_name="write-off posting's time"
                    ),
                ),
                migrations.AlterField(
                    model_name="paymentintent",
                    name="points_spend",
                    field=models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        db_index=False,
                        editable=False,
                        null=True,
                        on_delete=models.PROTECT,
                        related_name="+",
                        to="rewards.ledgertransaction",
                        verbose_name="points spend",
                    ),
                ),
                migrations.AlterField(
                    model_name="reconciliationexception",
                    name="write_off_transaction",
                    field=models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        db_index=False,
                        null=True,
                        on_delete=models.PROTECT,
                        related_name="+",
                        to="rewards.ledgertransaction",
                        verbose_name="write-off posting",
                    ),
                ),
            ],
            database_operations=[migrations.RunSQL(FORWARD, BACKWARD)],
        ),
    ]
