"""Payments are partitioned by month on their `created_at`; every row that names a payment refers to its
`(id, created_at)`.

A partitioned table's unique keys must hold the partition column: the primary key becomes (id, created_at) and the
public id's (public_id, created_at). They keep their meaning (see the model's docstring); the model keeps `id` as its
primary key and `public_id` unique as the rules.

The referrers already carry the payment's time (attempts, refunds and routing decisions `intent_created_at`; fee
splits, settlement lines, reconciliation exceptions and disputes `payment_created_at`): their single-column keys are
dropped and composite ones added, ON UPDATE CASCADE (the demo dates payments back, and their rows move with them).
The models' fields make no constraint of their own (`db_constraint=False`).

The payment code's one-to-one (a unique `payment_code_id`) cannot be a unique key of a partitioned table without the
month, which would let two payments of two months take one code. The code's row records its payment instead
(`used_by_id`, `used_by_created_at`, backfilled here, a key to the payment's `(id, created_at)`), and the payment's
key to its code is (payment_code_id, id) → the code's (id, used_by_id): a payment naming a code must be the one the
code records.

The old table is renamed (its indexes too), the partitioned one made like it (columns, defaults, checks), the months
from the oldest payment's to three months ahead created by core's function (plus the DEFAULT partition), the rows
copied, the identity set past the copied ids, the indexes and foreign keys made again with their names, the old table
dropped and the referrers' keys added (each checked over its table). Backward, the plain table comes back with its
single-column keys and the unique code, the referrers their single-column keys, and the code's columns go. It rewrites
the whole table in one transaction: on a large table, plan the downtime. A later schema change of `public_id` or
`payment_code` through Django would look for the single-column constraints and not find them: write it as SQL.
"""

from django.db import migrations, models

TABLE = "payments_paymentintent"

# (table, column naming the payment, its time column, the single-column key's name)
REFERRERS = (
    ("payments_paymentattempt", "intent_id", "intent_created_at", "payments_paymentatte_intent_id_ebac238b_fk_payments_"),
    (
        "payments_refund",
        "intent_id",
        "intent_created_at",
        "payments_refund_intent_id_0fcc71c9_fk_payments_paymentintent_id",
    ),
    (
        "payments_routingdecision",
        "intent_id",
        "intent_created_at",
        "payments_routingdeci_intent_id_69cb4e00_fk_payments_",
    ),
    ("payments_feesplit", "payment_id", "payment_created_at", "payments_feesplit_payment_id_795b77d9_fk_payments_"),
    (
        "payments_settlementline",
        "payment_id",
        "payment_created_at",
        "payments_settlementl_payment_id_62e01117_fk_payments_",
    ),
    (
        "payments_reconciliationexception",
        "payment_id",
        "payment_created_at",
        "payments_reconciliat_payment_id_f81e5430_fk_payments_",
    ),
    ("payments_dispute", "payment_id", "payment_created_at", "payments_dispute_payment_id_2344937c_fk_payments_"),
)

CODE_KEY = "payments_paymentinte_payment_code_id_3791ad30_fk_payments_"

# The table's indexes besides its keys, by name (each one's purpose is in the model).
INDEXES = """
CREATE INDEX payment_captured_brin ON {t} USING brin (captured_at);
CREATE INDEX payment_cardholder_statement ON {t} (cardholder_id, created_at DESC, id DESC);
CREATE INDEX payment_merchant_business_date ON {t} (merchant_id, business_date);
CREATE INDEX payments_pa_merchan_3ee0dd_idx ON {t} (merchant_id, livemode, id DESC);
CREATE INDEX payments_pa_risk_re_db96d0_idx ON {t} (risk_review, risk_review_deadline);
CREATE INDEX payments_pa_status_8f8919_idx ON {t} (status, authorization_expires_at);
CREATE INDEX payments_paymentintent_agreement_id_f205c045 ON {t} (agreement_id);
CREATE INDEX payments_paymentintent_card_id_71bce13f ON {t} (card_id);
CREATE INDEX payments_paymentintent_channel_id_c9e5111a ON {t} (channel_id);
CREATE INDEX payments_paymentintent_created_at_5e36a7ad ON {t} (created_at);
CREATE INDEX payments_paymentintent_linked_account_id_d541d68f ON {t} (linked_account_id);
CREATE INDEX payments_paymentintent_public_id_414cff73_like ON {t} (public_id varchar_pattern_ops);
CREATE INDEX payments_paymentintent_updated_at_brin ON {t} USING brin (updated_at);
"""

# The old table's indexes get names of their own (index names are the schema's), its foreign keys are copied over.
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
                AND conname <> '{skip}' LOOP
        EXECUTE format('ALTER TABLE {t} ADD CONSTRAINT %I %s', r.conname, r.definition);
    END LOOP;
END
$$;
"""

FORWARD = (
    "SET CONSTRAINTS ALL IMMEDIATE;\n"
    + "".join(f"ALTER TABLE {table} DROP CONSTRAINT {fk};\n" for table, _c, _t, fk in REFERRERS)
    + f"""
ALTER TABLE payments_paymentcode ADD COLUMN used_by_id bigint, ADD COLUMN used_by_created_at timestamptz;
UPDATE payments_paymentcode c SET used_by_id = p.id, used_by_created_at = p.created_at
  FROM {TABLE} p WHERE p.payment_code_id = c.id;
ALTER TABLE payments_paymentcode ADD CONSTRAINT paymentcode_used_by_set
    CHECK ((used_by_id IS NULL) = (used_by_created_at IS NULL));
ALTER TABLE payments_paymentcode ADD CONSTRAINT paymentcode_id_used_by UNIQUE (id, used_by_id);
"""
    + SET_ASIDE.format(t=TABLE)
    + f"""
CREATE TABLE {TABLE} (LIKE {TABLE}_old INCLUDING DEFAULTS INCLUDING CONSTRAINTS) PARTITION BY RANGE (created_at);
ALTER TABLE {TABLE} ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (SEQUENCE NAME {TABLE}_id_seq);

DO $$
DECLARE
    v_now date := date_trunc('month', now() AT TIME ZONE 'Asia/Shanghai')::date;
    v_first date;
BEGIN
    SELECT date_trunc('month', COALESCE(min(created_at), now()) AT TIME ZONE 'Asia/Shanghai')::date INTO v_first
    FROM {TABLE}_old;
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

ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_pkey PRIMARY KEY (id, created_at);
ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_public_id_key UNIQUE (public_id, created_at);
CREATE INDEX {TABLE}_payment_code_id ON {TABLE} (payment_code_id);
"""
    + INDEXES.format(t=TABLE)
    + COPY_FOREIGN_KEYS.format(t=TABLE, skip=CODE_KEY)
    + f"""
ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_payment_code_fk FOREIGN KEY (payment_code_id, id)
    REFERENCES payments_paymentcode (id, used_by_id) DEFERRABLE INITIALLY DEFERRED;
DROP TABLE {TABLE}_old;
ALTER TABLE payments_paymentcode ADD CONSTRAINT payments_paymentcode_used_by_fk FOREIGN KEY (used_by_id, used_by_created_at)
    REFERENCES {TABLE} (id, created_at) ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED;
"""
    + "".join(
        f"""ALTER TABLE {table} ADD CONSTRAINT {table}_payment_fk FOREIGN KEY ({column}, {time})
    REFERENCES {TABLE} (id, created_at) ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED;
"""
        for table, column, time, _fk in REFERRERS
    )
)

BACKWARD = (
    "SET CONSTRAINTS ALL IMMEDIATE;\n"
    + "".join(f"ALTER TABLE {table} DROP CONSTRAINT {table}_payment_fk;\n" for table, _c, _t, _fk in REFERRERS)
    + "ALTER TABLE payments_paymentcode DROP CONSTRAINT payments_paymentcode_used_by_fk;\n"
    + SET_ASIDE.format(t=TABLE)
    + f"""
CREATE TABLE {TABLE} (LIKE {TABLE}_old INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE {TABLE} ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (SEQUENCE NAME {TABLE}_id_seq);
INSERT INTO {TABLE} SELECT * FROM {TABLE}_old;
SELECT setval('{TABLE}_id_seq', last_value, is_called) FROM {TABLE}_old_id_seq;
ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_pkey PRIMARY KEY (id);
ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_public_id_key UNIQUE (public_id);
ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_payment_code_id_key UNIQUE (payment_code_id);
"""
    + INDEXES.format(t=TABLE)
    + COPY_FOREIGN_KEYS.format(t=TABLE, skip=f"{TABLE}_payment_code_fk")
    + f"""
ALTER TABLE {TABLE} ADD CONSTRAINT {CODE_KEY} FOREIGN KEY (payment_code_id)
    REFERENCES payments_paymentcode (id) DEFERRABLE INITIALLY DEFERRED;
DROP TABLE {TABLE}_old;
ALTER TABLE payments_paymentcode DROP CONSTRAINT paymentcode_id_used_by;
ALTER TABLE payments_paymentcode DROP CONSTRAINT paymentcode_used_by_set;
ALTER TABLE payments_paymentcode DROP COLUMN used_by_id, DROP COLUMN used_by_created_at;
"""
    + "".join(
        f"""ALTER TABLE {table} ADD CONSTRAINT {fk} FOREIGN KEY ({column})
    REFERENCES {TABLE} (id) DEFERRABLE INITIALLY DEFERRED;
"""
        for table, column, _time, fk in REFERRERS
    )
)


def _payment_field(**kwargs: object) -> models.ForeignKey:
    return models.ForeignKey(db_constraint=False, to="payments.paymentintent", **kwargs)  # type: ignore[arg-type]


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0046_payment_time_set_by_the_code"),
        ("core", "0021_partition_column_of_payments"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="paymentcode",
                    name="used_by",
                    field=_payment_field(
                        blank=True,
                        db_index=False,
                        editable=False,
                        null=True,
                        on_delete=models.PROTECT,
                        related_name="+",
                        verbose_name="payment",
                    ),
                ),
                migrations.AddField(
                    model_name="paymentcode",
                    name="used_by_created_at",
                    field=models.DateTimeField(blank=True, editable=False, null=True, verbose_name="intent created"),
                ),
                migrations.AlterField(
                    model_name="paymentintent",
                    name="payment_code",
                    field=models.OneToOneField(
                        blank=True,
                        db_constraint=False,
                        null=True,
                        on_delete=models.PROTECT,
                        related_name="payment",
                        to="payments.paymentcode",
                        verbose_name="payment code",
                    ),
                ),
                migrations.AlterField(
                    model_name="paymentattempt",
                    name="intent",
                    field=_payment_field(
                        db_index=False, on_delete=models.PROTECT, related_name="attempts", verbose_name="intent"
                    ),
                ),
                migrations.AlterField(
                    model_name="refund",
                    name="intent",
                    field=_payment_field(on_delete=models.PROTECT, related_name="refunds", verbose_name="intent"),
                ),
                migrations.AlterField(
                    model_name="routingdecision",
                    name="intent",
                    field=_payment_field(
                        on_delete=models.CASCADE, related_name="routing_decisions", verbose_name="intent"
                    ),
                ),
                migrations.AlterField(
                    model_name="feesplit",
                    name="payment",
                    field=_payment_field(on_delete=models.PROTECT, related_name="fee_splits", verbose_name="payment"),
                ),
                migrations.AlterField(
                    model_name="settlementline",
                    name="payment",
                    field=_payment_field(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=models.PROTECT,
                        related_name="+",
                        verbose_name="payment",
                    ),
                ),
                migrations.AlterField(
                    model_name="reconciliationexception",
                    name="payment",
                    field=_payment_field(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=models.PROTECT,
                        related_name="+",
                        verbose_name="payment",
                    ),
                ),
                migrations.AlterField(
                    model_name="dispute",
                    name="payment",
                    field=_payment_field(on_delete=models.PROTECT, related_name="disputes", verbose_name="payment"),
                ),
            ],
            database_operations=[migrations.RunSQL(FORWARD, BACKWARD)],
        ),
    ]
