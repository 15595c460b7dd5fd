"""Registers refunds with the monthly-partition functions, cut on `intent_created_at`, their payment's time.

The column is fixed by the refund's payment, as an attempt's is by its intent, so the unique keys that must hold it,
`(reference, intent_created_at)` and `(public_id, intent_created_at)`, still mean `reference` and `public_id`. The
table becomes partitioned in payments' migration; until then the functions refuse it as not partitioned.
"""

from django.db import migrations

COLUMNS = """
CREATE OR REPLACE FUNCTION mengka_partition_column(p_table text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE p_table
        WHEN 'rewards_entry' THEN 'created_at'
        WHEN 'payments_paymentattempt' THEN 'intent_created_at'
        WHEN 'merchants_event' THEN 'created_at'
        WHEN 'merchants_webhookdelivery' THEN 'event_created_at'
        WHEN 'payments_refund' THEN 'intent_created_at'
    END
$$;
"""

PREVIOUS = """
CREATE OR REPLACE FUNCTION mengka_partition_column(p_table text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE p_table
        WHEN 'rewards_entry' THEN 'created_at'
        WHEN 'payments_paymentattempt' THEN 'intent_created_at'
        WHEN 'merchants_event' THEN 'created_at'
        WHEN 'merchants_webhookdelivery' THEN 'event_created_at'
    END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("core", "0018_partitions_of_referenced_tables")]
    operations = [migrations.RunSQL(COLUMNS, PREVIOUS)]
