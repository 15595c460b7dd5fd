"""Turns a migrated database on a Citus coordinator into the distributed ledger (docs/scaling.md, "Citus").

Accounts are distributed by their id and entries by their account, co-located: an account's balance row and its
entries live on one shard, so a posting's writes to one account never leave that shard. The member banks and points
programmes the accounts name become reference tables (a copy on every node). Every other table stays the
coordinator's own. What Citus cannot keep is dropped here: entries', lots' and holds' foreign keys to a transaction
or an account across that line (the posting's single database transaction keeps those rows consistent instead); the
foreign keys between the coordinator's partitioned tables (attempts, events, deliveries) and the rest, so that they
stay plain PostgreSQL tables (see `_detach_partitioned_local_tables`); and the accounts' five-column uniqueness (a
unique key must hold the distribution column), which the ledger keeps with creation locks when `LEDGER_DISTRIBUTED`
is set (rewards.services.accounts.creation_locks). Idempotent: a table already distributed is left alone.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

# Small shared tables the distributed ones reference, copied to every node.
REFERENCE_TABLES = ("members_memberbank", "members_pointsprogram")
# (table, distribution column, co-located with): the first one sets the shards the others follow.
DISTRIBUTED_TABLES = (
    ("rewards_account", "id", None),
    ("rewards_entry", "account_id", "rewards_account"),
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
    """Keeps the coordinator's partitioned tables (attempts, events, deliveries: every partitioned table that is not
    distributed) plain PostgreSQL tables: a foreign key from one of them to a table that Citus converts when the
    reference tables are made would convert it too, and Citus fails to convert a partitioned table with CHECK
    constraints ("child table is missing constraint …_<shard id>"). Their foreign keys to other tables are dropped;
    those among themselves (a delivery's to its event) stay."""
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


def _take_inner_foreign_keys(tables: set[str]) -> list[tuple[str, str, str]]:
    """Drops the foreign keys between the tables about to be distributed and returns them (table, name, definition)
    to be put back once all are distributed: Citus converts one table at a time, and a table referencing a reference
    table is already in its metadata as a coordinator table, which may not reference a distributed one meanwhile."""
    found = [
        (str(source), str(name), str(definition))
        for source, name, target, definition in _rows(
            """
            SELECT conrelid::regclass::text, conname, confrelid::regclass::text, pg_get_constraintdef(oid)
            FROM pg_constraint WHERE contype = 'f' AND conparentid = 0
            """
        )
        if source in tables and target in tables and source != target
    ]
    for source, name, _ in found:
        _run(f"ALTER TABLE {_quote(source)} DROP CONSTRAINT {_quote(name)}")
    return found


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
        todo = [spec for spec in DISTRIBUTED_TABLES if present.get(spec[0]) != "distributed"]
        for table, column, _ in todo:
            _identity_to_sequence(table)
            for line in _drop_foreign_keys(table, keep=distributed | set(REFERENCE_TABLES)):
                done.append(f"foreign key dropped: {line}")
            done.extend(f"key: {line}" for line in _key_with_column(table, column))
        inner = _take_inner_foreign_keys(distributed) if todo else []
        for line in _detach_partitioned_local_tables(distributed):
            done.append(f"foreign key dropped (partitioned coordinator table): {line}")
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
    for source, name, definition in inner:
        _run(f"ALTER TABLE {_quote(source)} ADD CONSTRAINT {_quote(name)} {definition}")
        done.append(f"foreign key kept (co-located): {source}.{name}")
    return done


class Command(BaseCommand):
    help = (
        "On a Citus coordinator: make member banks and programmes reference tables and distribute the ledger's "
        "accounts and entries by account. Refuses a database without the citus extension."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        lines = distribute()
        for line in lines:
            self.stdout.write(line)
        shards = _rows(
            "SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'rewards_entry'::regclass",
        )[0][0]
        self.stdout.write(self.style.SUCCESS(f"citus_distribute: done ({len(lines)} changes; {shards} entry shards)"))
