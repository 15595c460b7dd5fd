"""Accounts and entries carry a `spread`: the value the ledger is distributed by on Citus (docs/scaling.md, "Citus"),
so that a cardholder's accounts, the bank sub-accounts serving them and all their entries sit on one shard.

An account's spread follows from its identity, once: a cardholder's accounts get the cardholder's sub-account number
(`shard_for(owner_id)`, the `shard` its bank sub-accounts have), a bank sub-account its `shard`, every other account
0. Existing accounts are filled with one UPDATE, their entries from them with one UPDATE … FROM (on the partitioned
table; only the entries of accounts off 0 change). The entries' column has no default: every writer names it.

Backward, the columns are dropped, except on a ledger Citus distributes by them (it cannot drop a distribution
column): there they stay, and forward again finds them and leaves them as they are."""

from django.conf import settings
from django.db import migrations, models

ADD = """
ALTER TABLE {table} ADD COLUMN spread smallint NOT NULL DEFAULT 0 CHECK (spread >= 0);
ALTER TABLE {table} ALTER COLUMN spread DROP DEFAULT;
"""
FILL = """
UPDATE rewards_account SET spread = CASE owner_kind WHEN 'cardholder' THEN owner_id % {shards} ELSE shard END
WHERE owner_kind IN ('cardholder', 'bank');
UPDATE rewards_entry e SET spread = a.spread FROM rewards_account a WHERE a.id = e.account_id AND a.spread <> 0;
"""
TABLES = ("rewards_account", "rewards_entry")


def _has_spread(cursor, table):
    cursor.execute(
        "SELECT 1 FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'spread' AND NOT attisdropped",
        [table],
    )
    return cursor.fetchone() is not None


def _distributed(cursor):
    cursor.execute("SELECT to_regclass('pg_dist_partition') IS NOT NULL")
    if not cursor.fetchone()[0]:
        return False
    cursor.execute("SELECT 1 FROM pg_dist_partition WHERE logicalrelid = 'rewards_account'::regclass")
    return cursor.fetchone() is not None


def add(apps, schema_editor):
    shards = max(1, int(settings.LEDGER_BANK_SHARDS))
    with schema_editor.connection.cursor() as cursor:
        if _has_spread(cursor, "rewards_account"):
            return
        for table in TABLES:
            cursor.execute(ADD.format(table=table))
        cursor.execute(FILL.format(shards=shards))  # no parameters: the % is SQL's


def drop(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        if _distributed(cursor):
            return
        for table in TABLES:
            cursor.execute(f"ALTER TABLE {table} DROP COLUMN spread")  # noqa: S608 - the two ledger tables


class Migration(migrations.Migration):
    dependencies = [
        ("rewards", "0024_ledger_transaction_entry_count"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="account",
                    name="spread",
                    field=models.PositiveSmallIntegerField(
                        default=0,
                        editable=False,
                        help_text=(
                            "A cardholder's accounts and the bank sub-accounts that serve them share one value (the "
                            "cardholder's sub-account number); every other account has 0."
                        ),
                        verbose_name="spread",
                    ),
                ),
                migrations.AddField(
                    model_name="entry",
                    name="spread",
                    field=models.PositiveSmallIntegerField(default=0, editable=False, verbose_name="spread"),
                    preserve_default=False,
                ),
            ],
            database_operations=[migrations.RunPython(add, drop, elidable=False)],
        ),
    ]
