"""What refers to a ledger transaction from a table that is not partitioned refers to its key's row instead.

A month of transactions can go to an archive only once no row refers to it (PostgreSQL refuses to detach a
partition that is referred to). Lots, lot movements, holds, voucher payments and promotion uses are not partitioned,
and live longer than the month of the transaction they name: a lot earned a year ago is still spent from. Each
referred to the transaction's `(id, created_at)`, so no month of transactions could ever be archived.

Each now refers to the transaction's key's row, `(transaction_id, transaction_created_at)` of `rewards_ledgerkey`,
unique for the purpose. That row names its transaction exactly (the transaction refers to it: 0026), refers to
nothing, and outlives the transaction's month: the reference is as exact as before, and the month may go. A
reversal's reference to the transaction it reverses (the transactions' own, across months) goes the same way. The
keys cascade on update as before: a transaction dated back (the demo's history) is dated through its key's row, which
its lots and the rest follow. Payments' and reconciliation exceptions' references stay on the transaction: those
tables are partitioned, and their months are archived before the ledger's.

Backwards, each reference comes back to the transaction and the unique target goes.
"""

from django.db import migrations, models

# (table, columns that name the transaction, the constraint's name)
REFERRERS = (
    ("rewards_lot", "earned_by_id, earned_by_created_at", "rewards_lot_earned_by_id_fk"),
    ("rewards_lotmovement", "transaction_id, transaction_created_at", "rewards_lotmovement_transaction_id_fk"),
    ("rewards_hold", "transaction_id, transaction_created_at", "rewards_hold_transaction_id_fk"),
    ("rewards_voucherpayment", "transaction_id, transaction_created_at", "rewards_voucherpayment_transaction_id_fk"),
    (
        "rewards_promotionuse",
        "points_transaction_id, points_transaction_created_at",
        "rewards_promotionuse_points_transaction_id_fk",
    ),
    ("rewards_ledgertransaction", "reverses_id, reverses_created_at", "rewards_ledgertransaction_reverses_id_fk"),
)


def _references(target: str) -> str:
    """Each referrer's key pointed at `target`. On a database distributed on Citus (`citus_distribute`), a referrer in
    Citus's metadata (a coordinator table Citus manages: lots, holds and the rest, which refer to reference tables)
    keeps no key to `target`: Citus would have to take the plain tables it reaches into its metadata, which it cannot
    do for a partitioned table with CHECK constraints, and `citus_distribute` drops those keys (IF EXISTS, the same)."""
    return "\n".join(
        f"""
ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name};
DO $$
DECLARE
    managed boolean := false;
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
        EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_dist_partition WHERE logicalrelid = $1::regclass)'
            INTO managed USING '{table}';
    END IF;
    IF NOT managed THEN
        ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY ({columns}) REFERENCES {target}
            ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED;
    END IF;
END $$;"""
        for table, columns, name in REFERRERS
    )


FORWARD = f"""
SET CONSTRAINTS ALL IMMEDIATE;
{_references("rewards_ledgerkey (transaction_id, transaction_created_at)")}
SET CONSTRAINTS ALL DEFERRED;
"""

BACKWARD = f"""
SET CONSTRAINTS ALL IMMEDIATE;
{_references("rewards_ledgertransaction (id, created_at)")}
SET CONSTRAINTS ALL DEFERRED;
"""


class Migration(migrations.Migration):
    dependencies = [("rewards", "0026_ledger_transaction_refers_to_its_key")]
    operations = [
        migrations.AddConstraint(
            model_name="ledgerkey",
            constraint=models.UniqueConstraint(
                fields=("transaction", "transaction_created_at"), name="rewards_ledgerkey_names_a_transaction_once"
            ),
        ),
        migrations.RunSQL(FORWARD, BACKWARD),
    ]
