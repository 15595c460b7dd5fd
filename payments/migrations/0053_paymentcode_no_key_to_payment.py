"""A payment code no longer has a foreign key to its payment: the payment's key to the code stays.

The two keys made a cycle between a month of payments and the codes (not partitioned) that paid them: PostgreSQL
would never let a month of payments be detached while a code referred to one of them, and codes pay every month. The
payment's key, `(payment_code_id, id)` → the code's `(id, used_by_id)`, is the one that keeps the rule: a payment that
names a code must be the one payment the code records, so no code pays twice. The code's `used_by_id` stays (set in
the transaction that writes the payment, `payment_code_used_by`; once the payment's month is archived it names a row
of its archive table); its `used_by_created_at`, there only for the key, goes: it would no longer follow a payment
re-dated (as the demo dates its history back).
"""

from django.db import migrations

KEY = "payments_paymentcode_used_by_fk"

# IF EXISTS: on a database distributed on Citus, `citus_distribute` dropped it already.
FORWARD = f"ALTER TABLE payments_paymentcode DROP CONSTRAINT IF EXISTS {KEY};"

# Backward, the column is back (RemoveField's reverse runs first), filled from the payments, before its check (dropped
# with the column) and the key are made again.
BACKWARD = f"""
SET CONSTRAINTS ALL IMMEDIATE;
UPDATE payments_paymentcode c SET used_by_created_at = p.created_at
    FROM payments_paymentintent p WHERE p.id = c.used_by_id;
ALTER TABLE payments_paymentcode ADD CONSTRAINT paymentcode_used_by_set
    CHECK ((used_by_id IS NULL) = (used_by_created_at IS NULL));
ALTER TABLE payments_paymentcode ADD CONSTRAINT {KEY} FOREIGN KEY (used_by_id, used_by_created_at)
    REFERENCES payments_paymentintent (id, created_at) ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED;
"""


class Migration(migrations.Migration):
    dependencies = [("payments", "0052_feesplit_fewer_indexes")]
    operations = [
        migrations.RunSQL(FORWARD, BACKWARD),
        migrations.RemoveField(model_name="paymentcode", name="used_by_created_at"),
    ]
