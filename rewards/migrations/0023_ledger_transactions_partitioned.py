"""Ledger transactions are partitioned by month on their created_at (core/migrations/0020 registered the table).

A partitioned table's unique keys must hold the partition column. In the database, so: a transaction's primary key is
`(id, created_at)` (the model keeps `id`), and its idempotency key, which must stay unique across every month (a
retried posting gets a new `created_at`), moves to an unpartitioned table, `rewards_ledgerkey(idempotency_key primary
key, transaction_id, transaction_created_at)`, written with every transaction. Every table that refers to a
transaction carries its time and refers to `(id, created_at)`: entries by their own `created_at` (always their
transaction's), the others by a new `<field>_created_at` column, backfilled here; payments' two referrers get theirs
in payments/migrations/0044. The composite keys cascade an update of a transaction's time (ON UPDATE CASCADE), so its
referrers follow it; a nullable reference and its time are both set or both empty (a check), so a writer that forgets
the time fails instead of escaping the key. The models' fields make no constraint of their own (`db_constraint=False`).

The old table is renamed, the partitioned one made with the same columns, identity, checks, keys and indexes (the
idempotency key's unique index goes to the new table), the months from the oldest transaction's to three months ahead
created by core's function (plus the DEFAULT partition), the rows copied, the identity set past the copied ids, the
foreign keys pointed at the new table and the old table dropped, in one transaction. Backwards, the plain table comes
back with its unique key and single-column foreign keys, and the new columns and the keys table go.
"""

from django.db import migrations, models

# The single-column foreign keys to the plain table, as Django made them: (table, constraint, column).
PLAIN_REFERENCES = [
    ("rewards_ledgertransaction", "rewards_ledgertransa_reverses_id_331e988c_fk_rewards_l", "reverses_id"),
    ("rewards_hold", "rewards_hold_transaction_id_2a577147_fk_rewards_l", "transaction_id"),
    ("rewards_lot", "rewards_lot_earned_by_id_0d5a618d_fk_rewards_l", "earned_by_id"),
    ("rewards_lotmovement", "rewards_lotmovement_transaction_id_6f26814b_fk_rewards_l", "transaction_id"),
    ("rewards_voucherpayment", "rewards_voucherpayme_transaction_id_867b80e4_fk_rewards_l", "transaction_id"),
    (
        "rewards_promotionuse",
        "rewards_promotionuse_points_transaction_i_ace1b58f_fk_rewards_l",
        "points_transaction_id",
    ),
    (
        "payments_reconciliationexception",
        "payments_reconciliat_write_off_transactio_ef2db4ea_fk_rewards_l",
        "write_off_transaction_id",
    ),
    ("payments_paymentintent", "payments_paymentinte_points_spend_id_15e46b62_fk_rewards_l", "points_spend_id"),
    ("rewards_entry", "rewards_entry_transaction_id_7c7e2686_fk_rewards_l", "transaction_id"),
]

# rewards' referrers of a transaction: (table, id column, time column, nullable).
REFERRERS = [
    ("rewards_hold", "transaction_id", "transaction_created_at", True),
    ("rewards_lot", "earned_by_id", "earned_by_created_at", False),
    ("rewards_lotmovement", "transaction_id", "transaction_created_at", False),
    ("rewards_voucherpayment", "transaction_id", "transaction_created_at", False),
    ("rewards_promotionuse", "points_transaction_id", "points_transaction_created_at", True),
]


def _fk(table: str, id_column: str, time_column: str) -> str:
    return (
        f"ALTER TABLE {table} ADD CONSTRAINT {table}_{id_column}_fk FOREIGN KEY ({id_column}, {time_column})"
        " REFERENCES rewards_ledgertransaction (id, created_at) ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED;"
    )


def _check(table: str, id_column: str, time_column: str) -> str:
    return (
        f"ALTER TABLE {table} ADD CONSTRAINT {table}_{time_column}_set"
        f" CHECK (({id_column} IS NULL) = ({time_column} IS NULL));"
    )


# Foreign keys are checked at each statement here: PostgreSQL refuses to add a key to a table with checks pending.
IMMEDIATE = "SET CONSTRAINTS ALL IMMEDIATE;\n"
DEFERRED = "\nSET CONSTRAINTS ALL DEFERRED;"

FORWARD = (
    IMMEDIATE
    + "\n".join(f"ALTER TABLE {table} DROP CONSTRAINT {name};" for table, name, _ in PLAIN_REFERENCES)
    + "\n"
    + "\n".join(
        f"ALTER TABLE {table} ADD COLUMN {time_column} timestamptz;"
        f"\nUPDATE {table} r SET {time_column} = t.created_at FROM rewards_ledgertransaction t WHERE t.id = r.{id_column};"
        + ("" if nullable else f"\nALTER TABLE {table} ALTER COLUMN {time_column} SET NOT NULL;")
        for table, id_column, time_column, nullable in REFERRERS
    )
    + """
ALTER TABLE rewards_ledgertransaction RENAME TO rewards_ledgertransaction_unpartitioned;
ALTER SEQUENCE rewards_ledgertransaction_id_seq RENAME TO rewards_ledgertransaction_unpartitioned_id_seq;
ALTER INDEX rewards_ledgertransaction_pkey RENAME TO rewards_ledgertransaction_unpartitioned_pkey;
ALTER INDEX rewards_ledgertransaction_idempotency_key_key RENAME TO rewards_ledgertransaction_unpartitioned_key;
ALTER INDEX rewards_ledgertransaction_idempotency_key_264dd4dc_like
    RENAME TO rewards_ledgertransaction_unpartitioned_key_like;
ALTER INDEX ledger_txn_created_at RENAME TO rewards_ledgertransaction_unpartitioned_created_at;
ALTER INDEX ledger_txn_reverses RENAME TO rewards_ledgertransaction_unpartitioned_reverses;
ALTER INDEX ledger_txn_unsealed RENAME TO rewards_ledgertransaction_unpartitioned_unsealed;
ALTER INDEX rewards_ledgertransaction_seal_id_7bc0826d RENAME TO rewards_ledgertransaction_unpartitioned_seal;
ALTER TABLE rewards_ledgertransaction_unpartitioned
    RENAME CONSTRAINT ledger_txn_points_non_negative TO rewards_ledgertransaction_unpartitioned_points;
ALTER TABLE rewards_ledgertransaction_unpartitioned
    RENAME CONSTRAINT ledger_txn_reversed_within_points TO rewards_ledgertransaction_unpartitioned_reversed;

CREATE TABLE rewards_ledgertransaction (
    id bigint GENERATED BY DEFAULT AS IDENTITY (SEQUENCE NAME rewards_ledgertransaction_id_seq),
    kind varchar(16) NOT NULL,
    idempotency_key varchar(200) NOT NULL,
    request_hash varchar(64) NOT NULL,
    points bigint NOT NULL,
    reversed_points bigint NOT NULL,
    rate numeric(20, 10),
    metadata jsonb NOT NULL,
    actor_label varchar(150) NOT NULL,
    created_at timestamptz NOT NULL,
    actor_id integer,
    reverses_id bigint,
    seal_id bigint,
    seal_digest varchar(64) NOT NULL DEFAULT '',
    reverses_created_at timestamptz,
    CONSTRAINT ledger_txn_points_non_negative CHECK (points >= 0),
    CONSTRAINT ledger_txn_reversed_within_points CHECK (reversed_points >= 0 AND reversed_points <= points),
    CONSTRAINT rewards_ledgertransaction_reverses_created_at_set
        CHECK ((reverses_id IS NULL) = (reverses_created_at IS NULL)),
    CONSTRAINT rewards_ledgertransaction_pkey PRIMARY KEY (id, created_at),
    CONSTRAINT rewards_ledgertransaction_actor_id_aab2aa99_fk_auth_user_id FOREIGN KEY (actor_id)
        REFERENCES auth_user (id) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT rewards_ledgertransaction_seal_id_7bc0826d_fk_rewards_seal_id FOREIGN KEY (seal_id)
        REFERENCES rewards_seal (id) DEFERRABLE INITIALLY DEFERRED
) PARTITION BY RANGE (created_at);
ALTER TABLE rewards_ledgertransaction_unpartitioned
    DROP CONSTRAINT rewards_ledgertransaction_actor_id_aab2aa99_fk_auth_user_id,
    DROP CONSTRAINT rewards_ledgertransaction_seal_id_7bc0826d_fk_rewards_seal_id;
CREATE INDEX ledger_txn_created_at ON rewards_ledgertransaction (created_at);
CREATE INDEX ledger_txn_reverses ON rewards_ledgertransaction (reverses_id) WHERE reverses_id IS NOT NULL;
CREATE INDEX ledger_txn_unsealed ON rewards_ledgertransaction (id) WHERE seal_id IS NULL;
CREATE INDEX rewards_ledgertransaction_seal_id_7bc0826d ON rewards_ledgertransaction (seal_id);

DO $$
DECLARE
    v_now date := date_trunc('month', now() AT TIME ZONE 'Asia/Shanghai')::date;
    v_first date;
BEGIN
    SELECT date_trunc('month', COALESCE(min(created_at), now()) AT TIME ZONE 'Asia/Shanghai')::date INTO v_first
    FROM rewards_ledgertransaction_unpartitioned;
    v_first := LEAST(v_first, v_now);
    PERFORM mengka_partitions_create(
        'rewards_ledgertransaction', v_first,
        (extract(year FROM age(v_now, v_first)) * 12 + extract(month FROM age(v_now, v_first)))::int + 4
    );
END
$$;
CREATE TABLE rewards_ledgertransaction_default PARTITION OF rewards_ledgertransaction DEFAULT;

INSERT INTO rewards_ledgertransaction (
    id, kind, idempotency_key, request_hash, points, reversed_points, rate, metadata, actor_label, created_at,
    actor_id, reverses_id, seal_id, seal_digest, reverses_created_at
)
SELECT t.id, t.kind, t.idempotency_key, t.request_hash, t.points, t.reversed_points, t.rate, t.metadata,
       t.actor_label, t.created_at, t.actor_id, t.reverses_id, t.seal_id, t.seal_digest, r.created_at
FROM rewards_ledgertransaction_unpartitioned t LEFT JOIN rewards_ledgertransaction_unpartitioned r
  ON r.id = t.reverses_id;
SELECT setval('rewards_ledgertransaction_id_seq', last_value, is_called)
FROM rewards_ledgertransaction_unpartitioned_id_seq;

CREATE TABLE rewards_ledgerkey (
    idempotency_key varchar(200) NOT NULL CONSTRAINT rewards_ledgerkey_pkey PRIMARY KEY,
    transaction_id bigint NOT NULL CONSTRAINT rewards_ledgerkey_transaction_id_key UNIQUE,
    transaction_created_at timestamptz NOT NULL
);
INSERT INTO rewards_ledgerkey (idempotency_key, transaction_id, transaction_created_at)
SELECT idempotency_key, id, created_at FROM rewards_ledgertransaction_unpartitioned;
DROP TABLE rewards_ledgertransaction_unpartitioned;

ALTER TABLE rewards_ledgertransaction ADD CONSTRAINT rewards_ledgertransaction_reverses_id_fk
    FOREIGN KEY (reverses_id, reverses_created_at) REFERENCES rewards_ledgertransaction (id, created_at)
    ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE rewards_entry ADD CONSTRAINT rewards_entry_transaction_id_fk
    FOREIGN KEY (transaction_id, created_at) REFERENCES rewards_ledgertransaction (id, created_at)
    ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED;
"""
    + _fk("rewards_ledgerkey", "transaction_id", "transaction_created_at")
    + "\n"
    + "\n".join(_fk(table, id_column, time_column) for table, id_column, time_column, _ in REFERRERS)
    + "\n"
    + "\n".join(
        _check(table, id_column, time_column) for table, id_column, time_column, nullable in REFERRERS if nullable
    )
    + DEFERRED
)

BACKWARD = (
    IMMEDIATE
    + "\n".join(
        f"ALTER TABLE {table} DROP CONSTRAINT {table}_{id_column}_fk;"
        + (f"\nALTER TABLE {table} DROP CONSTRAINT {table}_{time_column}_set;" if nullable else "")
        + f"\nALTER TABLE {table} DROP COLUMN {time_column};"
        for table, id_column, time_column, nullable in REFERRERS
    )
    + """
ALTER TABLE rewards_entry DROP CONSTRAINT rewards_entry_transaction_id_fk;
DROP TABLE rewards_ledgerkey;

ALTER TABLE rewards_ledgertransaction RENAME TO rewards_ledgertransaction_partitioned;
ALTER SEQUENCE rewards_ledgertransaction_id_seq RENAME TO rewards_ledgertransaction_partitioned_id_seq;
ALTER INDEX rewards_ledgertransaction_pkey RENAME TO rewards_ledgertransaction_partitioned_pkey;
ALTER INDEX ledger_txn_created_at RENAME TO rewards_ledgertransaction_partitioned_created_at;
ALTER INDEX ledger_txn_reverses RENAME TO rewards_ledgertransaction_partitioned_reverses;
ALTER INDEX ledger_txn_unsealed RENAME TO rewards_ledgertransaction_partitioned_unsealed;
ALTER INDEX rewards_ledgertransaction_seal_id_7bc0826d RENAME TO rewards_ledgertransaction_partitioned_seal;
ALTER TABLE rewards_ledgertransaction_partitioned
    RENAME CONSTRAINT ledger_txn_points_non_negative TO rewards_ledgertransaction_partitioned_points;
ALTER TABLE rewards_ledgertransaction_partitioned
    RENAME CONSTRAINT ledger_txn_reversed_within_points TO rewards_ledgertransaction_partitioned_reversed;
ALTER TABLE rewards_ledgertransaction_partitioned
    DROP CONSTRAINT rewards_ledgertransaction_actor_id_aab2aa99_fk_auth_user_id,
    DROP CONSTRAINT rewards_ledgertransaction_seal_id_7bc0826d_fk_rewards_seal_id;

CREATE TABLE rewards_ledgertransaction (
    id bigint GENERATED BY DEFAULT AS IDENTITY (SEQUENCE NAME rewards_ledgertransaction_id_seq) PRIMARY KEY,
    kind varchar(16) NOT NULL,
    idempotency_key varchar(200) NOT NULL CONSTRAINT rewards_ledgertransaction_idempotency_key_key UNIQUE,
    request_hash varchar(64) NOT NULL,
    points bigint NOT NULL,
    reversed_points bigint NOT NULL,
    rate numeric(20, 10),
    metadata jsonb NOT NULL,
    actor_label varchar(150) NOT NULL,
    created_at timestamptz NOT NULL,
    actor_id integer,
    reverses_id bigint,
    seal_id bigint,
    seal_digest varchar(64) NOT NULL DEFAULT '',
    CONSTRAINT ledger_txn_points_non_negative CHECK (points >= 0),
    CONSTRAINT ledger_txn_reversed_within_points CHECK (reversed_points >= 0 AND reversed_points <= points),
    CONSTRAINT rewards_ledgertransaction_actor_id_aab2aa99_fk_auth_user_id FOREIGN KEY (actor_id)
        REFERENCES auth_user (id) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT rewards_ledgertransaction_seal_id_7bc0826d_fk_rewards_seal_id FOREIGN KEY (seal_id)
        REFERENCES rewards_seal (id) DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX rewards_ledgertransaction_idempotency_key_264dd4dc_like
    ON rewards_ledgertransaction (idempotency_key varchar_pattern_ops);
CREATE INDEX ledger_txn_created_at ON rewards_ledgertransaction (created_at);
CREATE INDEX ledger_txn_reverses ON rewards_ledgertransaction (reverses_id) WHERE reverses_id IS NOT NULL;
CREATE INDEX ledger_txn_unsealed ON rewards_ledgertransaction (id) WHERE seal_id IS NULL;
CREATE INDEX rewards_ledgertransaction_seal_id_7bc0826d ON rewards_ledgertransaction (seal_id);
INSERT INTO rewards_ledgertransaction (
    id, kind, idempotency_key, request_hash, points, reversed_points, rate, metadata, actor_label, created_at,
    actor_id, reverses_id, seal_id, seal_digest
)
SELECT id, kind, idempotency_key, request_hash, points, reversed_points, rate, metadata, actor_label, created_at,
       actor_id, reverses_id, seal_id, seal_digest
FROM rewards_ledgertransaction_partitioned;
SELECT setval('rewards_ledgertransaction_id_seq', last_value, is_called)
FROM rewards_ledgertransaction_partitioned_id_seq;
DROP TABLE rewards_ledgertransaction_partitioned;
"""
    + "\n".join(
        f"ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY ({column})"
        " REFERENCES rewards_ledgertransaction (id) DEFERRABLE INITIALLY DEFERRED;"
        for table, name, column in PLAIN_REFERENCES
    )
    + DEFERRED
)


def _time(verbose_name: str, *, null: bool) -> models.DateTimeField:
    if null:
        return models.DateTimeField(verbose_name, null=True, blank=True, editable=False)
    return models.DateTimeField(verbose_name, default=None, editable=False)


def _reference(model: str, field: str, kind: type[models.ForeignKey], **options) -> migrations.AlterField:
    return migrations.AlterField(
        model_name=model,
        name=field,
        field=kind(on_delete=models.PROTECT, to="rewards.ledgertransaction", db_constraint=False, **options),
    )


STATE = [
    migrations.AlterField(
        model_name="ledgertransaction",
        name="idempotency_key",
        field=models.CharField(max_length=200, verbose_name="idempotency key"),
    ),
    migrations.AddField(
        model_name="ledgertransaction",
        name="reverses_created_at",
        field=_time("reversed transaction's time", null=True),
    ),
    _reference(
        "ledgertransaction",
        "reverses",
        models.ForeignKey,
        blank=True,
        null=True,
        db_index=False,
        related_name="reversals",
        verbose_name="reverses",
    ),
    _reference("entry", "transaction", models.ForeignKey, related_name="entries", verbose_name="transaction"),
    migrations.AddField(
        model_name="hold", name="transaction_created_at", field=_time("transaction's time", null=True)
    ),
    _reference(
        "hold", "transaction", models.OneToOneField, blank=True, null=True, related_name="hold", verbose_name="transaction"
    ),
    migrations.AddField(
        model_name="lot", name="earned_by_created_at", field=_time("earned at", null=False), preserve_default=False
    ),
    _reference("lot", "earned_by", models.ForeignKey, related_name="lots", verbose_name="earned by"),
    migrations.AddField(
        model_name="lotmovement",
        name="transaction_created_at",
        field=_time("transaction's time", null=False),
        preserve_default=False,
    ),
    _reference(
        "lotmovement", "transaction", models.ForeignKey, related_name="lot_movements", verbose_name="transaction"
    ),
    migrations.AddField(
        model_name="voucherpayment",
        name="transaction_created_at",
        field=_time("transaction's time", null=False),
        preserve_default=False,
    ),
    _reference(
        "voucherpayment", "transaction", models.OneToOneField, related_name="+", verbose_name="ledger transaction"
    ),
    migrations.AddField(
        model_name="promotionuse",
        name="points_transaction_created_at",
        field=_time("points transaction's time", null=True),
    ),
    _reference(
        "promotionuse",
        "points_transaction",
        models.OneToOneField,
        blank=True,
        null=True,
        related_name="+",
        verbose_name="points ledger transaction",
    ),
    migrations.CreateModel(
        name="LedgerKey",
        fields=[
            (
                "idempotency_key",
                models.CharField(max_length=200, primary_key=True, serialize=False, verbose_name="idempotency key"),
            ),
            ("transaction_created_at", models.DateTimeField(editable=False, verbose_name="transaction's time")),
            (
                "transaction",
                models.OneToOneField(
                    db_constraint=False,
                    on_delete=models.CASCADE,
                    related_name="key",
                    to="rewards.ledgertransaction",
                    verbose_name="transaction",
                ),
            ),
        ],
        options={"verbose_name": "ledger idempotency key", "verbose_name_plural": "ledger idempotency keys"},
    ),
]


class Migration(migrations.Migration):
    dependencies = [
        ("rewards", "0022_entry_created_at_partitioned"),
        ("core", "0020_partition_column_of_ledger_transactions"),
        # payments' tables refer to transactions: they must exist (with their plain keys) before the table changes.
        ("payments", "0042_attempt_intent_created_at_partitioned"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=STATE, database_operations=[migrations.RunSQL(FORWARD, BACKWARD)]
        ),
    ]
