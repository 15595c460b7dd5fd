"""Registers disputes, their evidence and reconciliation exceptions with the monthly-partition functions, cut on
their payment's month (`payment_created_at`; the evidence's `dispute_payment_created_at`, its dispute's payment's), so
that a month of them can be made ahead and archived before their payments'.

The tables become partitioned in payments' later migrations; until then the functions refuse them as not
partitioned.
"""

from django.db import migrations

CASES = """
        WHEN 'rewards_entry' THEN 'created_at'
        WHEN 'rewards_ledgertransaction' THEN 'created_at'
        WHEN 'payments_paymentattempt' THEN 'intent_created_at'
        WHEN 'merchants_event' THEN 'created_at'
        WHEN 'merchants_webhookdelivery' THEN 'event_created_at'
        WHEN 'payments_refund' THEN 'intent_created_at'
        WHEN 'payments_paymentintent' THEN 'created_at'
        WHEN 'payments_feesplit' THEN 'payment_created_at'
        WHEN 'payments_settlementline' THEN 'payment_created_at'
        WHEN 'payments_routingdecision' THEN 'intent_created_at'
"""

ADDED = """
        WHEN 'payments_dispute' THEN 'payment_created_at'
        WHEN 'payments_disputeevidence' THEN 'dispute_payment_created_at'
        WHEN 'payments_reconciliationexception' THEN 'payment_created_at'
"""

FUNCTION = """
CREATE OR REPLACE FUNCTION mengka_partition_column(p_table text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE p_table{cases}    END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("core", "0025_partition_move_checks_keys_first")]
    operations = [migrations.RunSQL(FUNCTION.format(cases=CASES + ADDED), FUNCTION.format(cases=CASES))]
