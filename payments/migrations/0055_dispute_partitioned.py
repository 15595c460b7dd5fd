"""Disputes are partitioned by month on `payment_created_at`, their payment's `created_at`, and their evidence on
`dispute_payment_created_at`, its dispute's payment's (a column added here, filled from the dispute), so that a month
of payments is no longer held by the disputes and evidence that name it and a month of them can be archived.

Every dispute has a payment (`payment_created_at` is NOT NULL, its key to the payment holds it), so every row has a
month: the DEFAULT partitions hold only rows outside the prepared months. A partitioned table's unique keys must hold
the partition column, and they keep their meaning (see the models' docstrings):

- the disputes' primary key is `(id, payment_created_at)`, which replaces the `(id, payment_created_at)` unique key
  settlement lines referred to (migration 0051): ids come from one identity sequence, whatever the month;
- a public id once: `(public_id, payment_created_at)`. A public id carries at least 128 random bits, so no two
  disputes draw one, whatever their months;
- a channel's reference once: `(channel_id, channel_reference, payment_created_at)`. A channel's reference names one
  dispute of one payment, so its month is fixed: a notice of that dispute again names the same payment, and so the
  same month, and still collides (the services look it up before opening one anyway);
- the evidence's primary key is `(id, dispute_payment_created_at)`, and its key to the dispute
  `(dispute_id, dispute_payment_created_at)` → the dispute's `(id, payment_created_at)`, ON UPDATE CASCADE as the
  dispute's own key to its payment is (the demo dates payments back: a dispute and its evidence move with them).

The settlement lines' key to the dispute stays `(dispute_id, payment_created_at)` → `(id, payment_created_at)`, made
again against the new table. The models keep `id` as their primary keys and state the rules; the evidence's
`dispute` field makes no constraint of its own.

Each table is renamed (its indexes too), the partitioned one made like it (columns, defaults, checks), the months from
the oldest row's payment's to three months ahead created by core's function (plus the DEFAULT partition), the rows
copied, the identity set past the copied ids, the keys, indexes and foreign keys made again with their names, and the
old table dropped. Backward, the plain tables come back with their single-column keys (and the disputes' `(id,
payment_created_at)` key for the lines), and the evidence's column goes. It rewrites both tables in one transaction:
on large tables, plan the downtime. A later change of the disputes' unique keys through Django would look for the
keys the model states and not find them: write it as SQL.
"""

from django.db import migrations, models

DISPUTE = "payments_dispute"
EVIDENCE = "payments_disputeevidence"
MONTH_KEY = "payments_dispute_id_payment_month_key"
LINE_KEY = "payments_settlementline_dispute_fk"
EVIDENCE_KEY = "payments_disputeevid_dispute_id_c9979e04_fk_payments_"

# The disputes' indexes besides their keys, by name (the model's `Meta.indexes` and its foreign keys').
DISPUTE_INDEXES = f"""
CREATE INDEX dispute_debit_due ON {DISPUTE} (closed_at)
    WHERE status IN ('lost', 'accepted', 'expired') AND NOT kind = 'retrieval';
CREATE INDEX dispute_holds_payment ON {DISPUTE} (payment_id) WHERE holds_settlement;
CREATE INDEX dispute_merchant ON {DISPUTE} (merchant_id, livemode, id DESC);
CREATE INDEX dispute_open_due ON {DISPUTE} (respond_by) WHERE status IN ('open', 'evidence_submitted');
CREATE INDEX payments_dispute_opened_by_user_id_8db9987a ON {DISPUTE} (opened_by_user_id);
CREATE INDEX payments_dispute_payment_id_2344937c ON {DISPUTE} (payment_id);
CREATE INDEX payments_dispute_public_id_a60311dc_like ON {DISPUTE} (public_id varchar_pattern_ops);
"""

EVIDENCE_INDEXES = f"""
CREATE INDEX payments_disputeevidence_dispute_id_c9979e04 ON {EVIDENCE} (dispute_id);
"""

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
              WHERE conrelid = '{t}_old'::regclass AND contype = 'f' AND conparentid = 0
                AND conname <> '{skip}' ORDER BY oid LOOP
        EXECUTE format('ALTER TABLE {t} ADD CONSTRAINT %I %s', r.conname, r.definition);
    END LOOP;
END
$$;
"""

# The partitioned table like the old one, its months from the oldest row's to three ahead and the default, the rows.
PARTITIONED = """
CREATE TABLE {t} (LIKE {t}_old INCLUDING DEFAULTS INCLUDING CONSTRAINTS) PARTITION BY RANGE ({column});
ALTER TABLE {t} ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (SEQUENCE NAME {t}_id_seq);

DO $$
DECLARE
    v_now date := date_trunc('month', now() AT TIME ZONE 'Asia/Shanghai')::date;
    v_first date;
BEGIN
    SELECT date_trunc('month', COALESCE(min({column}), now()) AT TIME ZONE 'Asia/Shanghai')::date
      INTO v_first FROM {t}_old;
    v_first := LEAST(v_first, v_now);
    PERFORM mengka_partitions_create(
        '{t}', v_first,
        (extract(year FROM age(v_now, v_first)) * 12 + extract(month FROM age(v_now, v_first)))::int + 4
    );
END
$$;
CREATE TABLE {t}_default PARTITION OF {t} DEFAULT;

INSERT INTO {t} SELECT * FROM {t}_old;
SELECT setval('{t}_id_seq', last_value, is_called) FROM {t}_old_id_seq;
"""

PLAIN = """
CREATE TABLE {t} (LIKE {t}_old INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE {t} ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (SEQUENCE NAME {t}_id_seq);
INSERT INTO {t} SELECT * FROM {t}_old;
SELECT setval('{t}_id_seq', last_value, is_called) FROM {t}_old_id_seq;
"""

FORWARD = (
    "SET CONSTRAINTS ALL IMMEDIATE;\n"
    + f"""
ALTER TABLE {EVIDENCE} ADD COLUMN dispute_payment_created_at timestamptz;
UPDATE {EVIDENCE} e SET dispute_payment_created_at = d.payment_created_at FROM {DISPUTE} d WHERE d.id = e.dispute_id;
ALTER TABLE {EVIDENCE} ALTER COLUMN dispute_payment_created_at SET NOT NULL;
ALTER TABLE {EVIDENCE} DROP CONSTRAINT {EVIDENCE_KEY};
ALTER TABLE payments_settlementline DROP CONSTRAINT {LINE_KEY};
"""
    + SET_ASIDE.format(t=DISPUTE)
    + PARTITIONED.format(t=DISPUTE, column="payment_created_at")
    + f"""
ALTER TABLE {DISPUTE} ADD CONSTRAINT {DISPUTE}_pkey PRIMARY KEY (id, payment_created_at);
ALTER TABLE {DISPUTE} ADD CONSTRAINT {DISPUTE}_public_id_key UNIQUE (public_id, payment_created_at);
CREATE UNIQUE INDEX dispute_channel_reference_once ON {DISPUTE} (channel_id, channel_reference, payment_created_at)
    WHERE NOT channel_reference = '';
"""
    + DISPUTE_INDEXES
    + COPY_FOREIGN_KEYS.format(t=DISPUTE, skip="")
    + f"""
DROP TABLE {DISPUTE}_old;
ALTER TABLE payments_settlementline ADD CONSTRAINT {LINE_KEY} FOREIGN KEY (dispute_id, payment_created_at)
    REFERENCES {DISPUTE} (id, payment_created_at) DEFERRABLE INITIALLY DEFERRED;
"""
    + SET_ASIDE.format(t=EVIDENCE)
    + PARTITIONED.format(t=EVIDENCE, column="dispute_payment_created_at")
    + f"""
ALTER TABLE {EVIDENCE} ADD CONSTRAINT {EVIDENCE}_pkey PRIMARY KEY (id, dispute_payment_created_at);
"""
    + EVIDENCE_INDEXES
    + f"""
ALTER TABLE {EVIDENCE} ADD CONSTRAINT {EVIDENCE}_dispute_fk FOREIGN KEY (dispute_id, dispute_payment_created_at)
    REFERENCES {DISPUTE} (id, payment_created_at) ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED;
DROP TABLE {EVIDENCE}_old;
"""
)

BACKWARD = (
    "SET CONSTRAINTS ALL IMMEDIATE;\n"
    + SET_ASIDE.format(t=EVIDENCE)
    + PLAIN.format(t=EVIDENCE)
    + f"""
ALTER TABLE {EVIDENCE} ADD CONSTRAINT {EVIDENCE}_pkey PRIMARY KEY (id);
ALTER TABLE {EVIDENCE} DROP COLUMN dispute_payment_created_at;
"""
    + EVIDENCE_INDEXES
    + f"""
DROP TABLE {EVIDENCE}_old;
ALTER TABLE payments_settlementline DROP CONSTRAINT {LINE_KEY};
"""
    + SET_ASIDE.format(t=DISPUTE)
    + PLAIN.format(t=DISPUTE)
    + f"""
ALTER TABLE {DISPUTE} ADD CONSTRAINT {DISPUTE}_pkey PRIMARY KEY (id);
ALTER TABLE {DISPUTE} ADD CONSTRAINT {DISPUTE}_public_id_key UNIQUE (public_id);
CREATE UNIQUE INDEX dispute_channel_reference_once ON {DISPUTE} (channel_id, channel_reference)
    WHERE NOT channel_reference = '';
ALTER TABLE {DISPUTE} ADD CONSTRAINT {MONTH_KEY} UNIQUE (id, payment_created_at);
"""
    + DISPUTE_INDEXES
    + COPY_FOREIGN_KEYS.format(t=DISPUTE, skip="")
    + f"""
DROP TABLE {DISPUTE}_old;
ALTER TABLE payments_settlementline ADD CONSTRAINT {LINE_KEY} FOREIGN KEY (dispute_id, payment_created_at)
    REFERENCES {DISPUTE} (id, payment_created_at) DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE {EVIDENCE} ADD CONSTRAINT {EVIDENCE_KEY} FOREIGN KEY (dispute_id)
    REFERENCES {DISPUTE} (id) DEFERRABLE INITIALLY DEFERRED;
"""
)


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0054_reconciliationexception_partitioned"),
        ("core", "0026_partition_column_of_disputes_and_exceptions"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="disputeevidence",
                    name="dispute_payment_created_at",
                    field=models.DateTimeField(default=None, editable=False, verbose_name="dispute's payment created"),
                    preserve_default=False,
                ),
                migrations.AlterField(
                    model_name="disputeevidence",
                    name="dispute",
                    field=models.ForeignKey(
                        db_constraint=False,
                        on_delete=models.PROTECT,
                        related_name="evidence",
                        to="payments.dispute",
                        verbose_name="dispute",
                    ),
                ),
            ],
            database_operations=[migrations.RunSQL(FORWARD, BACKWARD)],
        ),
    ]
