"""Turns a migrated database on a Citus coordinator into the distributed ledger (docs/scaling.md, "Citus").

Accounts and entries are distributed by their `spread`, co-located: a cardholder's accounts, the bank sub-accounts
serving the cardholder (`shard_for(cardholder)`, the accounts' `shard`) and all their entries share one spread, so a
cardholder's earn, redemption or hold reads, locks and writes one shard, in one single-shard transaction. Clearing
and fee accounts have spread 0: a posting that moves money between parties (an exchange between two banks'
programmes) spans shards, and stays atomic through Citus's two-phase commit. A unique key must hold the distribution
column: the accounts' primary key becomes (id, spread), the entries' gains spread, and the entries' foreign key to
their account becomes (account_id, spread) → (id, spread). The member banks and points
programmes the accounts name become reference tables (a copy on every node). Every other table stays the
coordinator's own. What Citus cannot keep is dropped here: entries', lots' and holds' foreign keys to a transaction
(or to its key's row, which lots, lot movements, holds, voucher payments and promotion uses refer to) or an account
across that line (the posting's single database transaction keeps those rows consistent instead); the
foreign keys between the coordinator's partitioned tables (the ledger's transactions, payments, attempts, refunds,
fee splits, events, deliveries) and the rest, so that they stay plain PostgreSQL tables (see
`_detach_partitioned_local_tables`); and the accounts' five-column uniqueness (a unique key must hold the
distribution column), which the ledger keeps with creation locks when `LEDGER_DISTRIBUTED` is set
(rewards.services.accounts.creation_locks). Idempotent: a table already distributed is left alone.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

# Small shared tables the distributed ones reference, copied to every node.
REFERENCE_TABLES = ("members_memberbank", "members_pointsprogram")
# The ledger's idempotency keys, which transactions and what refers to a transaction from a plain table refer to.
KEYS_TABLE = "rewards_ledgerkey"
# (table, distribution column, co-located with): the first one sets the shards the others follow.
DISTRIBUTED_TABLES = (
    ("rewards_account", "spread", None),
    ("rewards_entry", "spread", "rewards_account"),
)


def _rows(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def _run(sql: str, params: tuple[Any, ...] = ()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _quote(name: str) -> str:
    return connection.ops.quote_name(name)


def citus_tables() -> dict[str, str]:
    """The tables in Citus's metadata: name → 'distributed', 'reference' or 'local' (a Citus-managed table of the
    coordinator's, which is what a table referencing a reference table becomes)."""
    return {
        str(name): "distributed" if method == "h" else "reference" if model == "t" else "local"
        for name, method, model in _rows(
            "SELECT logicalrelid::regclass::text, partmethod, repmodel FROM pg_dist_partition"
        )
    }


def _identity_to_sequence(table: str) -> None:
    """Citus refuses a distribution column that is an identity column: the id moves to a sequence default, starting
    after the highest id, so the application keeps inserting without naming it."""
    rows = _rows(
        "SELECT attidentity FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'id' AND NOT attisdropped",
        (table,),
    )
    if not rows or not rows[0][0]:
        return
    sequence = f"{table}_id_sequence"
    (highest,) = _rows(f"SELECT coalesce(max(id), 0) FROM {_quote(table)}")[0]  # noqa: S608 - a quoted name
    _run(f"ALTER TABLE {_quote(table)} ALTER COLUMN id DROP IDENTITY")
    _run(f"CREATE SEQUENCE IF NOT EXISTS {_quote(sequence)} AS bigint OWNED BY {_quote(table)}.id")
    _run("SELECT setval(%s::regclass, %s, %s)", (sequence, max(highest, 1), highest > 0))
    _run(f"ALTER TABLE {_quote(table)} ALTER COLUMN id SET DEFAULT nextval('{sequence}'::regclass)")


def _drop_foreign_keys(table: str, keep: set[str]) -> list[str]:
    """Drops the foreign keys from and to `table` Citus cannot enforce: every one except those whose other side is in
    `keep` (co-located distributed tables and reference tables). Only the top of a partitioned table's constraints."""
    found = _rows(
        """
        SELECT conrelid::regclass::text, conname, confrelid::regclass::text FROM pg_constraint
        WHERE contype = 'f' AND conparentid = 0 AND (conrelid = %s::regclass OR confrelid = %s::regclass)
        """,
        (table, table),
    )
    dropped = []
    for source, name, target in found:
        other = target if source == table else source
        if other in keep:
            continue
        _run(f"ALTER TABLE {_quote(source)} DROP CONSTRAINT {_quote(name)}")
        dropped.append(f"{source}.{name} → {target}")
    return dropped


def _detach_partitioned_local_tables(distributed: set[str]) -> list[str]:
    """Keeps the coordinator's partitioned tables (the ledger's transactions, payments, attempts, refunds, fee splits,
    events, deliveries: every partitioned table that is not distributed) plain PostgreSQL tables: a foreign key from
    one of them to a table that Citus converts when the reference tables are made would convert it too, and Citus
    fails to convert a partitioned table with CHECK constraints ("child table is missing constraint …_<shard id>").
    Their foreign keys to other tables are dropped; those among themselves (a delivery's to its event, a fee split's
    to its payment and refund) stay."""
    partitioned = {
        str(name)
        for (name,) in _rows("SELECT partrelid::regclass::text FROM pg_partitioned_table")
        if str(name) not in distributed
    }
    dropped = []
    for source, name, target in _rows(
        "SELECT conrelid::regclass::text, conname, confrelid::regclass::text FROM pg_constraint"
        " WHERE contype = 'f' AND conparentid = 0"
    ):
        if (source in partitioned) != (target in partitioned):
            _run(f"ALTER TABLE {_quote(source)} DROP CONSTRAINT {_quote(name)}")
            dropped.append(f"{source}.{name} → {target}")
    return dropped


def _take_inner_foreign_keys(columns: dict[str, str]) -> list[tuple[str, str, str]]:
    """Drops the foreign keys between the tables about to be distributed (`columns`: table → distribution column) and
    returns them (table, name, definition) to be put back once all are distributed: Citus converts one table at a
    time, and a table referencing a reference table is already in its metadata as a coordinator table, which may not
    reference a distributed one meanwhile; and the referenced key is about to gain its distribution column. Between
    distributed tables a foreign key must hold the distribution columns on both sides: each one comes back with them
    added (the entries' (account_id) → (id) as (account_id, spread) → (id, spread))."""
    found = []
    for source, name, target, source_columns, target_columns, deferrable, deferred in _rows(
        """
        SELECT c.conrelid::regclass::text, c.conname, c.confrelid::regclass::text,
               ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o)
                     JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o),
               ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, o)
                     JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o),
               c.condeferrable, c.condeferred
        FROM pg_constraint c WHERE c.contype = 'f' AND c.conparentid = 0
        """
    ):
        if source not in columns or target not in columns or source == target:
            continue
        source_columns, target_columns = list(source_columns), list(target_columns)
        if columns[source] not in source_columns:
            source_columns.append(columns[source])
            target_columns.append(columns[target])
        definition = (
            f"FOREIGN KEY ({', '.join(_quote(c) for c in source_columns)}) REFERENCES {_quote(target)}"
            f" ({', '.join(_quote(c) for c in target_columns)})"
            + (" DEFERRABLE" if deferrable else "")
            + (" INITIALLY DEFERRED" if deferred else "")
        )
        found.append((str(source), str(name), definition))
    for source, name, _ in found:
        _run(f"ALTER TABLE {_quote(source)} DROP CONSTRAINT {_quote(name)}")
    return found


def _distribution_column(table: str) -> str | None:
    """The column Citus distributes `table` by, or None when it is not a distributed table."""
    rows = _rows(
        "SELECT column_to_column_name(logicalrelid, partkey) FROM pg_dist_partition"
        " WHERE logicalrelid = %s::regclass AND partmethod = 'h'",
        (table,),
    )
    return str(rows[0][0]) if rows else None


def _key_with_column(table: str, column: str) -> list[str]:
    """Every primary key and unique constraint must hold the distribution column: the primary key gains it at its end;
    another unique constraint without it is dropped (named in the return)."""
    changed = []
    for name, kind, columns in _rows(
        """
        SELECT c.conname, c.contype, array_agg(a.attname ORDER BY k.ord)
        FROM pg_constraint c
        CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
        WHERE c.conrelid = %s::regclass AND c.contype IN ('p', 'u') AND c.conparentid = 0
        GROUP BY c.conname, c.contype
        """,
        (table,),
    ):
        if column in columns:
            continue
        _run(f"ALTER TABLE {_quote(table)} DROP CONSTRAINT {_quote(name)}")
        if kind == "p":
            key = ", ".join(_quote(c) for c in [*columns, column])
            _run(f"ALTER TABLE {_quote(table)} ADD CONSTRAINT {_quote(name)} PRIMARY KEY ({key})")
            changed.append(f"{table}.{name} primary key ({key})")
        else:
            changed.append(f"{table}.{name} unique ({', '.join(columns)}) dropped")
    return changed


def distribute() -> list[str]:
    """Does the work on the current connection: the keys and foreign keys in one transaction, then Citus's functions,
    each in its own (a failure part way leaves the database to be made afresh); returns what it did, a line each."""
    if not _rows("SELECT 1 FROM pg_extension WHERE extname = 'citus'"):
        raise CommandError(
            "The citus extension is not in this database: run this on a Citus coordinator's database made by "
            "scripts/citus/citus.sh createdb."
        )
    done: list[str] = []
    with transaction.atomic():
        present = citus_tables()
        distributed = {table for table, _, _ in DISTRIBUTED_TABLES}
        for table, column, _ in DISTRIBUTED_TABLES:
            by = _distribution_column(table) if present.get(table) == "distributed" else column
            if by != column:
                raise CommandError(
                    f"{table} is distributed by {by}, not by {column}: make the database afresh (a ledger distributed "
                    "by account is not moved in place)."
                )
        todo = [spec for spec in DISTRIBUTED_TABLES if present.get(spec[0]) != "distributed"]
        for table, _, _ in todo:
            _identity_to_sequence(table)
            for line in _drop_foreign_keys(table, keep=distributed | set(REFERENCE_TABLES)):
                done.append(f"foreign key dropped: {line}")
        # Before the keys change: the accounts' primary key cannot be replaced while the entries' foreign key uses it.
        inner = _take_inner_foreign_keys({t: c for t, c, _ in DISTRIBUTED_TABLES}) if todo else []
        for table, column, _ in todo:
            done.extend(f"key: {line}" for line in _key_with_column(table, column))
        for line in _detach_partitioned_local_tables(distributed):
            done.append(f"foreign key dropped (partitioned coordinator table): {line}")
        # The keys' rows stay a plain table of the coordinator's, as their transactions do: a key to them from a table
        # that refers to a reference table would take them into Citus's metadata, and with them every plain table
        # their keys reach.
        for line in _drop_foreign_keys(KEYS_TABLE, keep=set()):
            done.append(f"foreign key dropped (the ledger's keys): {line}")
    # Citus's own functions run each in its own transaction: they copy rows to the workers.
    for table in REFERENCE_TABLES:
        if citus_tables().get(table) != "reference":
            _run("SELECT create_reference_table(%s)", (table,))
            done.append(f"reference table: {table}")
    for table, column, colocate_with in todo:
        _run(
            "SELECT create_distributed_table(%s, %s, colocate_with => %s)",
            (table, column, colocate_with or "default"),
        )
        done.append(
            f"distributed: {table} by {column}" + (f", co-located with {colocate_with}" if colocate_with else "")
        )
    # A transaction that touched several shards at once may not then write a coordinator table (Citus cannot keep
    # both consistent): a posting reads and writes both, so multi-shard statements run one shard after another.
    database = connection.settings_dict["NAME"]
    _run(f"ALTER DATABASE {_quote(database)} SET citus.multi_shard_modify_mode TO 'sequential'")
    done.append(f"database {database}: citus.multi_shard_modify_mode = sequential")
    # Entries and accounts are co-located by spread: a join of the two on the account's id alone (the ORM's, through
    # `Entry.account`) needs Citus to repartition one side. One that also joins a coordinator table is refused:
    # those name the spread as well.
    _run(f"ALTER DATABASE {_quote(database)} SET citus.enable_repartition_joins TO on")
    done.append(f"database {database}: citus.enable_repartition_joins = on")
    for source, name, definition in inner:
        _run(f"ALTER TABLE {_quote(source)} ADD CONSTRAINT {_quote(name)} {definition}")
        done.append(f"foreign key kept (co-located): {source}.{name}")
    return done


def entry_shards() -> int:
    return int(_rows("SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'rewards_entry'::regclass")[0][0])


def spread_reach(spreads: int) -> int:
    """How many of the entries' shards `spreads` spreads (0 … spreads - 1) land on: Citus hashes each value to a
    shard, so a few spreads share shards and leave others empty."""
    return int(
        _rows(
            "SELECT count(DISTINCT get_shard_id_for_distribution_column('rewards_entry', v))"
            " FROM generate_series(0, %s - 1) v",
            (max(1, spreads),),
        )[0][0]
    )


def reach_report(spreads: int) -> tuple[str, bool]:
    """What the configured spreads (`LEDGER_BANK_SHARDS`) reach of the entries' shards, and whether that is under
    half of them; then how many spreads would reach most (the first power of two reaching all but a tenth)."""
    shards = entry_shards()
    reached = spread_reach(spreads)
    line = f"spreads: LEDGER_BANK_SHARDS = {spreads} reach {reached} of {shards} entry shards"
    if reached * 2 >= shards:
        return line, False
    more = spreads
    while more < 64 * shards and spread_reach(more) * 10 < shards * 9:
        more *= 2
    return (
        f"{line}; {more} would reach {spread_reach(more)}: set LEDGER_BANK_SHARDS before the first posting "
        "(an account keeps the spread it was made with)",
        True,
    )


class Command(BaseCommand):
    help = (
        "On a Citus coordinator: make member banks and programmes reference tables and distribute the ledger's "
        "accounts and entries by spread, co-located. Refuses a database without the citus extension."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        lines = distribute()
        for line in lines:
            self.stdout.write(line)
        shards = entry_shards()
        self.stdout.write(self.style.SUCCESS(f"citus_distribute: done ({len(lines)} changes; {shards} entry shards)"))
        reach, few = reach_report(settings.LEDGER_BANK_SHARDS)
        self.stdout.write(self.style.WARNING(reach) if few else reach)
