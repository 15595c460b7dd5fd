"""Each ledger transaction carries the number of entries it was posted with, so that the sealer can tell a transaction
whose entries it does not all see yet (on Citus, the entries commit on the workers after the transaction row commits
on the coordinator) and `ledger_check` a transaction that lost or gained an entry.

The column is added to the partitioned table (its months follow), then filled from the entries, counted on their own
first (on Citus they are distributed and the transactions are the coordinator's: the count is computed before it is
joined to them)."""

from django.db import migrations, models

FILL = """
WITH counted AS MATERIALIZED (
    SELECT transaction_id AS id, COUNT(*) AS entries FROM rewards_entry GROUP BY transaction_id
)
UPDATE rewards_ledgertransaction t SET entry_count = counted.entries FROM counted WHERE t.id = counted.id;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("rewards", "0023_ledger_transactions_partitioned"),
    ]

    operations = [
        migrations.AddField(
            model_name="ledgertransaction",
            name="entry_count",
            field=models.PositiveIntegerField(default=0, verbose_name="entries"),
            preserve_default=False,
        ),
        migrations.RunSQL(FILL, migrations.RunSQL.noop),
    ]
