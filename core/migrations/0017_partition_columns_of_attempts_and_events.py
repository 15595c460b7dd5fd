"""Registers three more tables with the monthly-partition functions: payment attempts (cut on their intent's time),
merchants' events (their own time) and webhook deliveries (their event's time).

Each is cut on a time that is fixed by the row's parent — an attempt's intent, a delivery's event — so a unique key
that must hold the partition column, `(intent, sequence, intent_created_at)` or `(event, endpoint, event_created_at)`,
still means `(intent, sequence)` or `(event, endpoint)`. The tables themselves become partitioned in their apps'
migrations; until then the functions refuse them as not partitioned.
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
    END
$$;
"""

PREVIOUS = """
CREATE OR REPLACE FUNCTION mengka_partition_column(p_table text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE p_table
        WHEN 'rewards_entry' THEN 'created_at'
    END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("core", "0016_partitions_schedule")]
    operations = [migrations.RunSQL(COLUMNS, PREVIOUS)]
