"""Registers payments with the monthly-partition functions, cut on their own `created_at`.

Every table that refers to a payment (attempts, refunds, routing decisions, fee splits, settlement lines,
reconciliation exceptions, disputes, payment codes) carries the payment's time in a composite foreign key, and the
functions already move and archive the months of a table that others refer to (0018). The table becomes partitioned
in payments' migration 0047; until then the functions refuse it as not partitioned.
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
    END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("core", "0020_partition_column_of_ledger_transactions")]
    operations = [migrations.RunSQL(COLUMNS, PREVIOUS)]
