"""Seal version 2: each sealed transaction keeps the digest of its rows, seals carry their version (seals made before
stay version 1 and verify as they were made), and the chain cannot fork (one seal follows each seal)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("rewards", "0006_drop_pg_post_simple"),
    ]

    operations = [
        migrations.AddField(
            model_name="ledgertransaction",
            name="seal_digest",
            field=models.CharField(
                blank=True,
                db_default="",
                default="",
                help_text="The hash of this transaction's rows when it was sealed (seal version 2), to name an edited one.",
                max_length=64,
                verbose_name="sealed digest",
            ),
        ),
        # Existing seals were made under version 1; new ones default to version 2.
        migrations.AddField(
            model_name="seal",
            name="version",
            field=models.PositiveSmallIntegerField(default=1, verbose_name="version"),
        ),
        migrations.AlterField(
            model_name="seal",
            name="version",
            field=models.PositiveSmallIntegerField(default=2, verbose_name="version"),
        ),
        migrations.AddConstraint(
            model_name="seal",
            constraint=models.UniqueConstraint(fields=("previous_hash",), name="ledger_seal_chain_no_fork"),
        ),
    ]
