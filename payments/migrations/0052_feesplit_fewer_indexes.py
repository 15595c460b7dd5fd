"""Two of the fee splits' indexes go: the one on `bank_id` alone, which `(bank_id, party)` leads with, and the one on
`refund_id` alone, which `feesplit_one_refund_per_party` (refund_id, party, payment_created_at) WHERE refund_id IS
NOT NULL leads with (a search by one refund, the refund's key included, implies the refund is there). Every payment
writes about four splits, so each capture is eight index entries lighter.

Only the indexes are dropped (from the partitioned table, and so from every month): Django's own way would drop and
make again the bank's foreign key, checking every split.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("members", "0010_card_bank_cardholder_index"),
        ("payments", "0051_settlementline_partitioned"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "payments_feesplit_bank_id_c8298eff"',
                    'CREATE INDEX "payments_feesplit_bank_id_c8298eff" ON "payments_feesplit" ("bank_id")',
                ),
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "payments_feesplit_refund_id_e3bd300c"',
                    'CREATE INDEX "payments_feesplit_refund_id_e3bd300c" ON "payments_feesplit" ("refund_id")',
                ),
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="feesplit",
                    name="bank",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=models.deletion.PROTECT,
                        related_name="fee_splits",
                        to="members.memberbank",
                        verbose_name="bank",
                    ),
                ),
                migrations.AlterField(
                    model_name="feesplit",
                    name="refund",
                    field=models.ForeignKey(
                        blank=True,
                        db_constraint=False,
                        db_index=False,
                        null=True,
                        on_delete=models.deletion.PROTECT,
                        related_name="fee_splits",
                        to="payments.refund",
                        verbose_name="refund",
                    ),
                ),
            ],
        ),
    ]
