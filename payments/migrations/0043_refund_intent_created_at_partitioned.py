"""Refunds get their payment's created_at, and the table is partitioned by month on it; the rows that name a refund
(fee splits, settlement lines, reconciliation exceptions) get their payment's created_at and refer to the refund by
both.

A partitioned table's unique keys must hold the partition column: the primary key becomes (id, intent_created_at),
the reference's key (reference, intent_created_at) and the public id's (public_id, intent_created_at). They keep their
meaning since the column is fixed by the payment (see the model's docstring); the model keeps `id` as its primary key
and its unique fields as the rules (the state gains only the field).

A foreign key to the refund must name a unique key of it, so each referrer gets `payment_created_at`, its payment's
created_at (set for every row that has a payment: NOT NULL on fee splits, whose payment is, and NULL exactly when the
payment is on the others, where a check also wants a payment on a row with a refund, so that no NULL leaves the key
unchecked), and its key becomes (refund_id, payment_created_at) → the refund's (id,
intent_created_at); the models' `refund` fields make no constraint of their own (`db_constraint=False`). First the
migration checks that every row naming a refund names the refund's payment, which the composite key relies on.

The old table is renamed, the partitioned one made with the same columns, identity, check, foreign keys and indexes,
the months from the oldest refund's payment's to three months ahead created by core's function (plus the DEFAULT
partition), the rows copied with their payment's time, the identity set past the copied ids, the old table dropped
and the referrers' keys added (each checked over its table). Backward, the plain table comes back with its
single-column keys, and the referrers their single-column foreign keys, without the new column.

A later schema change of `reference` or `public_id` through Django would look for the single-column unique
constraints by their columns and not find them: write it as SQL, like this one.
"""

from django.db import migrations, models

REFERRERS = (
    ("payments_feesplit", "payments_feesplit_refund_id_e3bd300c_fk_payments_refund_id"),
    ("payments_settlementline", "payments_settlementl_refund_id_e8ec89a5_fk_payments_"),
    ("payments_reconciliationexception", "payments_reconciliat_refund_id_b99349b6_fk_payments_"),
)

CHECKS = (
    ("payments_settlementline", "settlementline_payment_month"),
    ("payments_reconciliationexception", "recon_exception_payment_month"),
)

FORWARD = (
    """
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM payments_feesplit f JOIN payments_refund r ON r.id = f.refund_id
                WHERE f.payment_id IS DISTINCT FROM r.intent_id)
       OR EXISTS (SELECT 1 FROM payments_settlementline l JOIN payments_refund r ON r.id = l.refund_id
                   WHERE l.payment_id IS DISTINCT FROM r.intent_id)
       OR EXISTS (SELECT 1 FROM payments_reconciliationexception e JOIN payments_refund r ON r.id = e.refund_id
                   WHERE e.payment_id IS DISTINCT FROM r.intent_id) THEN
        RAISE EXCEPTION 'a row names a refund but not the refund''s payment' USING ERRCODE = '23000';
    END IF;
END
$$;
"""
    + "".join(f"ALTER TABLE {table} DROP CONSTRAINT {fk};\n" for table, fk in REFERRERS)
    + "".join(
        f"""
ALTER TABLE {table} ADD COLUMN payment_created_at timestamptz;
UPDATE {table} t SET payment_created_at = p.created_at FROM payments_paymentintent p WHERE p.id = t.payment_id;
"""
        for table, _fk in REFERRERS
    )
    + """
ALTER TABLE payments_feesplit ALTER COLUMN payment_created_at SET NOT NULL;
"""
    + "".join(
        f"""ALTER TABLE {table} ADD CONSTRAINT {name} CHECK (
    (payment_id IS NULL AND payment_created_at IS NULL AND refund_id IS NULL)
    OR (payment_id IS NOT NULL AND payment_created_at IS NOT NULL));
"""
        for table, name in CHECKS
    )
    + """
ALTER TABLE payments_refund RENAME TO payments_refund_unpartitioned;
ALTER SEQUENCE payments_refund_id_seq RENAME TO payments_refund_unpartitioned_id_seq;
ALTER INDEX payments_refund_pkey RENAME TO payments_refund_unpartitioned_pkey;
ALTER INDEX payments_refund_public_id_key RENAME TO payments_refund_unpartitioned_public_id;
ALTER INDEX payments_refund_reference_key RENAME TO payments_refund_unpartitioned_reference;
ALTER INDEX payments_refund_public_id_c2c1ecd2_like RENAME TO payments_refund_unpartitioned_public_id_like;
ALTER INDEX payments_refund_reference_0209ea94_like RENAME TO payments_refund_unpartitioned_reference_like;
ALTER INDEX payments_refund_intent_id_0fcc71c9 RENAME TO payments_refund_unpartitioned_intent;
ALTER INDEX refund_business_date RENAME TO payments_refund_unpartitioned_business_date;
ALTER INDEX refund_merchant_business_date RENAME TO payments_refund_unpartitioned_merchant_business_date;
ALTER TABLE payments_refund_unpartitioned RENAME CONSTRAINT refund_amount_positive TO payments_refund_unpartitioned_amount;

CREATE TABLE payments_refund (
    id bigint GENERATED BY DEFAULT AS IDENTITY (SEQUENCE NAME payments_refund_id_seq),
    public_id varchar(40) NOT NULL,
    amount bigint NOT NULL,
    status varchar(16) NOT NULL,
    reason varchar(100) NOT NULL,
    reference varchar(64) NOT NULL,
    channel_reference varchar(64) NOT NULL,
    failure_code varchar(64) NOT NULL,
    points_reversed bigint NOT NULL,
    created_at timestamptz NOT NULL,
    completed_at timestamptz,
    intent_id bigint NOT NULL,
    business_date date,
    promotion_cost_returned bigint NOT NULL,
    cofunding_returned bigint NOT NULL,
    merchant_id bigint NOT NULL,
    intent_created_at timestamptz NOT NULL,
    CONSTRAINT refund_amount_positive CHECK (amount > 0),
    CONSTRAINT payments_refund_pkey PRIMARY KEY (id, intent_created_at),
    CONSTRAINT payments_refund_public_id_key UNIQUE (public_id, intent_created_at),
    CONSTRAINT payments_refund_reference_key UNIQUE (reference, intent_created_at),
    CONSTRAINT payments_refund_intent_id_0fcc71c9_fk_payments_paymentintent_id FOREIGN KEY (intent_id)
        REFERENCES payments_paymentintent (id) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT payments_refund_merchant_id_b2d4a1c8_fk_merchants_merchant_id FOREIGN KEY (merchant_id)
        REFERENCES merchants_merchant (id) DEFERRABLE INITIALLY DEFERRED
) PARTITION BY RANGE (intent_created_at);
CREATE INDEX payments_refund_intent_id_0fcc71c9 ON payments_refund (intent_id);
CREATE INDEX payments_refund_public_id_c2c1ecd2_like ON payments_refund (public_id varchar_pattern_ops);
CREATE INDEX payments_refund_reference_0209ea94_like ON payments_refund (reference varchar_pattern_ops);
CREATE INDEX refund_business_date ON payments_refund (business_date);
CREATE INDEX refund_merchant_business_date ON payments_refund (merchant_id, business_date);

DO $$
DECLARE
    v_now date := date_trunc('month', now() AT TIME ZONE 'Asia/Shanghai')::date;
    v_first date;
BEGIN
    SELECT date_trunc('month', COALESCE(min(i.created_at), now()) AT TIME ZONE 'Asia/Shanghai')::date INTO v_first
    FROM payments_refund_unpartitioned r JOIN payments_paymentintent i ON i.id = r.intent_id;
    v_first := LEAST(v_first, v_now);
    PERFORM mengka_partitions_create(
        'payments_refund', v_first,
        (extract(year FROM age(v_now, v_first)) * 12 + extract(month FROM age(v_now, v_first)))::int + 4
    );
END
$$;
CREATE TABLE payments_refund_default PARTITION OF payments_refund DEFAULT;

INSERT INTO payments_refund (
    id, public_id, amount, status, reason, reference, channel_reference, failure_code, points_reversed, created_at,
    completed_at, intent_id, business_date, promotion_cost_returned, cofunding_returned, merchant_id,
    intent_created_at)
SELECT r.id, r.public_id, r.amount, r.status, r.reason, r.reference, r.channel_reference, r.failure_code,
       r.points_reversed, r.created_at, r.completed_at, r.intent_id, r.business_date, r.promotion_cost_returned,
       r.cofunding_returned, r.merchant_id, i.created_at
FROM payments_refund_unpartitioned r JOIN payments_paymentintent i ON i.id = r.intent_id;
SELECT setval('payments_refund_id_seq', last_value, is_called) FROM payments_refund_unpartitioned_id_seq;
DROP TABLE payments_refund_unpartitioned;
"""
    + "".join(
        f"""ALTER TABLE {table} ADD CONSTRAINT {table}_refund_fk FOREIGN KEY (refund_id, payment_created_at)
    REFERENCES payments_refund (id, intent_created_at) DEFERRABLE INITIALLY DEFERRED;
"""
        for table, _fk in REFERRERS
    )
)

BACKWARD = (
    "".join(f"ALTER TABLE {table} DROP CONSTRAINT {table}_refund_fk;\n" for table, _fk in REFERRERS)
    + """
ALTER TABLE payments_refund RENAME TO payments_refund_partitioned;
ALTER SEQUENCE payments_refund_id_seq RENAME TO payments_refund_partitioned_id_seq;
ALTER INDEX payments_refund_pkey RENAME TO payments_refund_partitioned_pkey;
ALTER INDEX payments_refund_public_id_key RENAME TO payments_refund_partitioned_public_id;
ALTER INDEX payments_refund_reference_key RENAME TO payments_refund_partitioned_reference;
ALTER INDEX payments_refund_public_id_c2c1ecd2_like RENAME TO payments_refund_partitioned_public_id_like;
ALTER INDEX payments_refund_reference_0209ea94_like RENAME TO payments_refund_partitioned_reference_like;
ALTER INDEX payments_refund_intent_id_0fcc71c9 RENAME TO payments_refund_partitioned_intent;
ALTER INDEX refund_business_date RENAME TO payments_refund_partitioned_business_date;
ALTER INDEX refund_merchant_business_date RENAME TO payments_refund_partitioned_merchant_business_date;
ALTER TABLE payments_refund_partitioned RENAME CONSTRAINT refund_amount_positive TO payments_refund_partitioned_amount;

CREATE TABLE payments_refund (
    id bigint GENERATED BY DEFAULT AS IDENTITY (SEQUENCE NAME payments_refund_id_seq) PRIMARY KEY,
    public_id varchar(40) NOT NULL CONSTRAINT payments_refund_public_id_key UNIQUE,
    amount bigint NOT NULL,
    status varchar(16) NOT NULL,
    reason varchar(100) NOT NULL,
    reference varchar(64) NOT NULL CONSTRAINT payments_refund_reference_key UNIQUE,
    channel_reference varchar(64) NOT NULL,
    failure_code varchar(64) NOT NULL,
    points_reversed bigint NOT NULL,
    created_at timestamptz NOT NULL,
    completed_at timestamptz,
    intent_id bigint NOT NULL,
    business_date date,
    promotion_cost_returned bigint NOT NULL,
    cofunding_returned bigint NOT NULL,
    merchant_id bigint NOT NULL,
    CONSTRAINT refund_amount_positive CHECK (amount > 0),
    CONSTRAINT payments_refund_intent_id_0fcc71c9_fk_payments_paymentintent_id FOREIGN KEY (intent_id)
        REFERENCES payments_paymentintent (id) DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT payments_refund_merchant_id_b2d4a1c8_fk_merchants_merchant_id FOREIGN KEY (merchant_id)
        REFERENCES merchants_merchant (id) DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX payments_refund_intent_id_0fcc71c9 ON payments_refund (intent_id);
CREATE INDEX payments_refund_public_id_c2c1ecd2_like ON payments_refund (public_id varchar_pattern_ops);
CREATE INDEX payments_refund_reference_0209ea94_like ON payments_refund (reference varchar_pattern_ops);
CREATE INDEX refund_business_date ON payments_refund (business_date);
CREATE INDEX refund_merchant_business_date ON payments_refund (merchant_id, business_date);

INSERT INTO payments_refund (
    id, public_id, amount, status, reason, reference, channel_reference, failure_code, points_reversed, created_at,
    completed_at, intent_id, business_date, promotion_cost_returned, cofunding_returned, merchant_id)
SELECT id, public_id, amount, status, reason, reference, channel_reference, failure_code, points_reversed, created_at,
       completed_at, intent_id, business_date, promotion_cost_returned, cofunding_returned, merchant_id
FROM payments_refund_partitioned;
SELECT setval('payments_refund_id_seq', last_value, is_called) FROM payments_refund_partitioned_id_seq;
DROP TABLE payments_refund_partitioned;
"""
    + "".join(f"ALTER TABLE {table} DROP CONSTRAINT {name};\n" for table, name in CHECKS)
    + "".join(
        f"""ALTER TABLE {table} DROP COLUMN payment_created_at;
ALTER TABLE {table} ADD CONSTRAINT {fk} FOREIGN KEY (refund_id)
    REFERENCES payments_refund (id) DEFERRABLE INITIALLY DEFERRED;
"""
        for table, fk in REFERRERS
    )
)

MONTH_CHECK = models.Q(payment__isnull=True, payment_created_at__isnull=True, refund__isnull=True) | models.Q(
    payment__isnull=False, payment_created_at__isnull=False
)


def _refund_field(**kwargs: object) -> models.ForeignKey:
    return models.ForeignKey(
        blank=True,
        db_constraint=False,
        null=True,
        on_delete=models.PROTECT,
        to="payments.refund",
        verbose_name="refund",
        **kwargs,  # type: ignore[arg-type]
    )


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0042_attempt_intent_created_at_partitioned"),
        ("core", "0019_partition_column_of_refunds"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(
                    model_name="refund",
                    name="intent_created_at",
                    field=models.DateTimeField(default=None, editable=False, verbose_name="intent created"),
                    preserve_default=False,
                ),
                migrations.AddField(
                    model_name="feesplit",
                    name="payment_created_at",
                    field=models.DateTimeField(default=None, editable=False, verbose_name="intent created"),
                    preserve_default=False,
                ),
                migrations.AddField(
                    model_name="settlementline",
                    name="payment_created_at",
                    field=models.DateTimeField(blank=True, editable=False, null=True, verbose_name="intent created"),
                ),
                migrations.AddField(
                    model_name="reconciliationexception",
                    name="payment_created_at",
                    field=models.DateTimeField(blank=True, editable=False, null=True, verbose_name="intent created"),
                ),
                migrations.AlterField(
                    model_name="feesplit", name="refund", field=_refund_field(related_name="fee_splits")
                ),
                migrations.AlterField(
                    model_name="settlementline",
                    name="refund",
                    field=_refund_field(related_name="+", db_index=False),
                ),
                migrations.AlterField(
                    model_name="reconciliationexception",
                    name="refund",
                    field=_refund_field(related_name="+", db_index=False),
                ),
                migrations.AddConstraint(
                    model_name="settlementline",
                    constraint=models.CheckConstraint(condition=MONTH_CHECK, name="settlementline_payment_month"),
                ),
                migrations.AddConstraint(
                    model_name="reconciliationexception",
                    constraint=models.CheckConstraint(condition=MONTH_CHECK, name="recon_exception_payment_month"),
                ),
            ],
            database_operations=[migrations.RunSQL(FORWARD, BACKWARD)],
        ),
    ]
