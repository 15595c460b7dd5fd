"""Refunds carry their payment's merchant, and an index by (merchant, business date).

Settlement takes a chunk of merchants at a time; it found the chunk's refunds by business date and only then by their
payment's merchant, reading every refund of the day once per chunk — a cost that grows with the day times the chunks.
The merchant is the intent's, fixed for the refund's life; existing refunds are given theirs here.
"""

import django.db.models.deletion
from django.db import migrations, models

BACKFILL = """
UPDATE payments_refund r SET merchant_id = p.merchant_id
FROM payments_paymentintent p WHERE p.id = r.intent_id AND r.merchant_id IS NULL
"""


class Migration(migrations.Migration):
    dependencies = [
        ("merchants", "0019_account_changes_through_approvals"),
        ("payments", "0040_recon_dispute_rows"),
    ]

    operations = [
        migrations.AddField(
            model_name="refund",
            name="merchant",
            field=models.ForeignKey(
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="refunds",
                to="merchants.merchant",
                verbose_name="merchant",
            ),
        ),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
        migrations.AlterField(
            model_name="refund",
            name="merchant",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="refunds",
                to="merchants.merchant",
                verbose_name="merchant",
            ),
        ),
        migrations.AddIndex(
            model_name="refund",
            index=models.Index(fields=["merchant", "business_date"], name="refund_merchant_business_date"),
        ),
    ]
