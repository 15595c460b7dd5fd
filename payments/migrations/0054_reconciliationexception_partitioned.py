"""Reconciliation exceptions are partitioned by month on their payment's `payment_created_at`; an exception without a
payment (a channel's row we have no record of, a payout's, a late statement) has none and sits in the DEFAULT
partition. Nothing refers to an exception, and its keys to payments and refunds hold the payment's month: a month of
payments can be archived once its exceptions' month is.

A partitioned table's unique keys must hold the partition column, and they keep their meaning (see the model's
docstring):

- no primary key: its columns would be NOT NULL, and an exception without a payment has no month. The ids' key is
  `(id, payment_created_at)`, unique with NULLS NOT DISTINCT (one id each, as the one identity sequence gives);
- the public id's: `(public_id, payment_created_at)` NULLS NOT DISTINCT (random, one per row);
- the problem's: `(key, payment_created_at)` NULLS NOT DISTINCT. Reconciliation finds the exception a re-import or a
  corrected file raises again by it (`INSERT ... ON CONFLICT (key, payment_created_at)`, and the late statement's
  `get_or_create` by key and an empty month), so one key must always come with one month. It does:
  - the key names the channel, the business date, the class, the type and the row (our reference, else the
    channel's transaction id, else the amount and time; a dispute row's stage and the channel's dispute id, else our
    reference), never the file;
  - the class decides whether there is a payment: `missing_with_us` (a row of the channel's we do not have) and
    `statement_late` name none, nor a payout's row; `missing_at_channel`, `amount_mismatch` and `status_mismatch`
    name our row, whose reference is the key's (a payment's attempt, a refund: one payment);
  - a payment row's `duplicate` names the payment its first copy paired with, if it paired: a re-import pairs it the
    same way unless our side of the day changed between the two files. Its upsert takes the month of the exception
    already raised under its key, so the row is found whatever the pairing (and keeps its payment, as before);
  - a dispute row's exception was the one write that changes the payment of an exception already raised (a
    `dispute_missing` keyed by the channel's dispute id names the payment our reference on the row finds, which a
    corrected file may add). That statement now moves the exception to its new month first (an UPDATE moves the row
    across partitions), then upserts it: one row per key still, with the payment the latest file names.
  Nothing else updates an exception's `payment_id` or `payment_created_at` (the operators' actions change its status,
  resolution, note and write-off) but the key's ON UPDATE CASCADE, when a payment is re-dated: the row moves with it.

The old table is renamed (its indexes too), the partitioned one made like it (columns, defaults, checks), the months
from the oldest exception's payment's to three months ahead created by core's function (plus the DEFAULT partition),
the rows copied, the identity set past the copied ids, the keys and indexes (partial ones too) made again with their
names, the foreign keys (to channels, statements, payments, refunds, payouts, the write-off's ledger transaction,
users) copied over, and the old table dropped. Backward, the plain table comes back with its primary key and its
single-column unique keys (refused if two months of one key were written since). It rewrites the whole table in one
transaction: on a large table, plan the downtime. A later schema change of `public_id` or `key` through Django would
look for the single-column constraints and not find them: write it as SQL.
"""

from django.db import migrations

TABLE = "payments_reconciliationexception"

# The old table's indexes get names of their own (index names are the schema's), its foreign keys are copied over in
# the order they were made (PostgreSQL checks a row's keys in that order, and so names the first one it breaks).
SET_ASIDE = """
ALTER TABLE {t} RENAME TO {t}_old;
ALTER SEQUENCE {t}_id_seq RENAME TO {t}_old_id_seq;
DO $$
DECLARE
    r record;
    n integer := 0;
BEGIN
    FOR r IN SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
              WHERE i.indrelid = '{t}_old'::regclass ORDER BY c.relname LOOP
        n := n + 1;
        EXECUTE format('ALTER INDEX %I RENAME TO %I', r.relname, '{t}_old_' || n);
    END LOOP;
END
$$;
"""

COPY_FOREIGN_KEYS = """
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT conname, pg_get_constraintdef(oid) AS definition FROM pg_constraint
              WHERE conrelid = '{t}_old'::regclass AND contype = 'f' AND conparentid = 0 ORDER BY oid LOOP
        EXECUTE format('ALTER TABLE {t} ADD CONSTRAINT %I %s', r.conname, r.definition);
    END LOOP;
END
$$;
"""

# The indexes that are not keys, as they were.
INDEXES = f"""
CREATE INDEX {TABLE}_key_9d79a48d_like ON {TABLE} (key varchar_pattern_ops);
CREATE INDEX {TABLE}_public_id_e4fb1142_like ON {TABLE} (public_id varchar_pattern_ops);
CREATE INDEX {TABLE}_resolved_by_id_4558fabb ON {TABLE} (resolved_by_id);
CREATE INDEX recon_exception_day ON {TABLE} (channel_id, business_date, status);
CREATE INDEX recon_exception_holds_payment ON {TABLE} (payment_id) WHERE holds_settlement AND payment_id IS NOT NULL;
CREATE INDEX recon_exception_holds_refund ON {TABLE} (refund_id) WHERE holds_settlement AND refund_id IS NOT NULL;
CREATE INDEX recon_exception_released ON {TABLE} (resolved_at)
    WHERE holds_settlement AND status IN ('resolved', 'superseded');
"""

FORWARD = (
    "SET CONSTRAINTS ALL IMMEDIATE;\n"
    + SET_ASIDE.format(t=TABLE)
    + f"""
CREATE TABLE {TABLE} (LIKE {TABLE}_old INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
    PARTITION BY RANGE (payment_created_at);
ALTER TABLE {TABLE} ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (SEQUENCE NAME {TABLE}_id_seq);

DO $$
DECLARE
    v_now date := date_trunc('month', now() AT TIME ZONE 'Asia/Shanghai')::date;
    v_first date;
BEGIN
    SELECT date_trunc('month', COALESCE(min(payment_created_at), now()) AT TIME ZONE 'Asia/Shanghai')::date
      INTO v_first FROM {TABLE}_old;
    v_first := LEAST(v_first, v_now);
    PERFORM mengka_partitions_create(
        '{TABLE}', v_first,
        (extract(year FROM age(v_now, v_first)) * 12 + extract(month FROM age(v_now, v_first)))::int + 4
    );
END
$$;
CREATE TABLE {TABLE}_default PARTITION OF {TABLE} DEFAULT;

INSERT INTO {TABLE} SELECT * FROM {TABLE}_old;
SELECT setval('{TABLE}_id_seq', last_value, is_called) FROM {TABLE}_old_id_seq;

ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_id_key UNIQUE NULLS NOT DISTINCT (id, payment_created_at);
ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_public_id_key UNIQUE NULLS NOT DISTINCT (public_id, payment_created_at);
ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_key_key UNIQUE NULLS NOT DISTINCT (key, payment_created_at);
"""
    + INDEXES
    + COPY_FOREIGN_KEYS.format(t=TABLE)
    + f"DROP TABLE {TABLE}_old;\n"
)

BACKWARD = (
    "SET CONSTRAINTS ALL IMMEDIATE;\n"
    + SET_ASIDE.format(t=TABLE)
    + f"""
CREATE TABLE {TABLE} (LIKE {TABLE}_old INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE {TABLE} ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (SEQUENCE NAME {TABLE}_id_seq);
INSERT INTO {TABLE} SELECT * FROM {TABLE}_old;
SELECT setval('{TABLE}_id_seq', last_value, is_called) FROM {TABLE}_old_id_seq;

ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_pkey PRIMARY KEY (id);
ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_public_id_key UNIQUE (public_id);
ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_key_key UNIQUE (key);
"""
    + INDEXES
    + COPY_FOREIGN_KEYS.format(t=TABLE)
    + f"DROP TABLE {TABLE}_old;\n"
)


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0053_paymentcode_no_key_to_payment"),
        ("core", "0026_partition_column_of_disputes_and_exceptions"),
    ]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
