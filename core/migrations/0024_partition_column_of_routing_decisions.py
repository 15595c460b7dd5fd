"""Registers routing decisions with the monthly-partition functions, cut on their payment's `intent_created_at`, so
that a month of them can be made ahead and archived before their payments'.

The table becomes partitioned in payments' migration 0050; until then the functions refuse it as not partitioned.
"""

from django.db import migrations

COLUMNS = """
CREATE OR REPLACE FUNCTION mengka_partition_column(p_table text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE p_table
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
    END
$$;
"""

PREVIOUS = """
CREATE OR REPLACE FUNCTION mengka_partition_column(p_table text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE p_table
        WHEN 'rewards_entry' THEN 'created_at'
        WHEN 'rewards_ledgertransaction' THEN 'created_at'
        WHEN 'payments_paymentattempt' THEN 'intent_created_at'
        WHEN 'merchants_event' THEN 'created_at'
        WHEN 'merchants_webhookdelivery' THEN 'event_created_at'
        WHEN 'payments_refund' THEN 'intent_created_at'
        WHEN 'payments_paymentintent' THEN 'created_at'
        WHEN 'payments_feesplit' THEN 'payment_created_at'
        WHEN 'payments_settlementline' THEN 'payment_created_at'
    END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("core", "0023_partition_column_of_fee_splits_and_settlement_lines")]
    operations = [migrations.RunSQL(COLUMNS, PREVIOUS)]
