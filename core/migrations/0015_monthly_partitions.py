"""Monthly partitions: functions that create a registered table's months and detach one month to an archive table.

They belong to the role that runs migrations and run with its rights (SECURITY DEFINER, a fixed search_path), so the
application role, which may not create tables, can run them: `manage.py db_roles` grants it EXECUTE; PUBLIC may not.
Only the tables that `mengka_partition_column` names are accepted (a later migration that partitions another table
replaces that function), and every name is quoted with format('%I'). A month is the calendar month in Asia/Shanghai,
the business calendar's zone (core/calendar.py): a month's statement reads one partition.

`mengka_partitions_create(table, first_month, months)` creates `<table>_pYYYYMM` for each month that is missing and
returns the names it created. When the DEFAULT partition holds rows of such a month, the rows move to the new
partition in the same transaction (the default is detached, the month created, its rows moved, the default attached
again), since PostgreSQL refuses a partition whose rows sit in the default.

`mengka_partition_detach(table, month)` detaches `<table>_pYYYYMM` and renames it `<table>_archive_YYYYMM`, which
stays a table the owner and the application role read; it returns the archive's name, or NULL when the month has no
partition.
"""

from django.db import migrations

FUNCTIONS = r"""
CREATE OR REPLACE FUNCTION mengka_partition_column(p_table text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE p_table
        WHEN 'rewards_entry' THEN 'created_at'
    END
$$;

CREATE OR REPLACE FUNCTION mengka_partitions_create(p_table text, p_first date, p_months integer)
RETURNS SETOF text LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_column text := mengka_partition_column(p_table);
    v_month date;
    v_name text;
    v_default text;
    v_low timestamptz;
    v_high timestamptz;
    v_waiting boolean;
BEGIN
    IF v_column IS NULL THEN
        RAISE EXCEPTION 'table % is not partitioned by month', quote_literal(p_table) USING ERRCODE = '22023';
    END IF;
    IF p_first IS NULL OR p_months IS NULL OR p_months < 0 OR p_months > 120 THEN
        RAISE EXCEPTION 'a first month and 0 to 120 months are needed' USING ERRCODE = '22023';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass(format('%I', p_table))) THEN
        RAISE EXCEPTION 'table % is not a partitioned table', quote_literal(p_table) USING ERRCODE = '55000';
    END IF;
    SELECT c.relname INTO v_default
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = to_regclass(format('%I', p_table)) AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT';
    FOR i IN 0 .. p_months - 1 LOOP
        v_month := (date_trunc('month', p_first) + make_interval(months => i))::date;
        v_name := p_table || '_p' || to_char(v_month, 'YYYYMM');
        CONTINUE WHEN to_regclass(format('%I', v_name)) IS NOT NULL;
        v_low := v_month::timestamp AT TIME ZONE 'Asia/Shanghai';
        v_high := (v_month + interval '1 month')::timestamp AT TIME ZONE 'Asia/Shanghai';
        v_waiting := false;
        IF v_default IS NOT NULL THEN
            EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE %I >= $1 AND %I < $2)', v_default, v_column, v_column)
               INTO v_waiting USING v_low, v_high;
        END IF;
        IF v_waiting THEN
            EXECUTE format('ALTER TABLE %I DETACH PARTITION %I', p_table, v_default);
            EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)', v_name, p_table, v_low, v_high);
            EXECUTE format('INSERT INTO %I SELECT * FROM %I WHERE %I >= $1 AND %I < $2', v_name, v_default, v_column, v_column)
              USING v_low, v_high;
            EXECUTE format('DELETE FROM %I WHERE %I >= $1 AND %I < $2', v_default, v_column, v_column) USING v_low, v_high;
            EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I DEFAULT', p_table, v_default);
        ELSE
            EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)', v_name, p_table, v_low, v_high);
        END IF;
        RETURN NEXT v_name;
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION mengka_partition_detach(p_table text, p_month date)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    v_name text;
    v_archive text;
BEGIN
    IF mengka_partition_column(p_table) IS NULL THEN
        RAISE EXCEPTION 'table % is not partitioned by month', quote_literal(p_table) USING ERRCODE = '22023';
    END IF;
    IF p_month IS NULL THEN
        RAISE EXCEPTION 'a month is needed' USING ERRCODE = '22023';
    END IF;
    v_name := p_table || '_p' || to_char(p_month, 'YYYYMM');
    v_archive := p_table || '_archive_' || to_char(p_month, 'YYYYMM');
    IF NOT EXISTS (SELECT 1 FROM pg_inherits
                    WHERE inhrelid = to_regclass(format('%I', v_name))
                      AND inhparent = to_regclass(format('%I', p_table))) THEN
        RETURN NULL;
    END IF;
    IF to_regclass(format('%I', v_archive)) IS NOT NULL THEN
        RAISE EXCEPTION 'archive table % exists already', quote_literal(v_archive) USING ERRCODE = '42P07';
    END IF;
    EXECUTE format('ALTER TABLE %I DETACH PARTITION %I', p_table, v_name);
    EXECUTE format('ALTER TABLE %I RENAME TO %I', v_name, v_archive);
    RETURN v_archive;
END
$$;

REVOKE ALL ON FUNCTION mengka_partitions_create(text, date, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION mengka_partition_detach(text, date) FROM PUBLIC;

-- The tables live in the schema the migrations run in: the functions look there and in nothing a caller can add.
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION mengka_partitions_create(text, date, integer) SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION mengka_partition_detach(text, date) SET search_path = %I, pg_temp',
                   current_schema());
END
$$;
"""

DROP = """
DROP FUNCTION IF EXISTS mengka_partition_detach(text, date);
DROP FUNCTION IF EXISTS mengka_partitions_create(text, date, integer);
DROP FUNCTION IF EXISTS mengka_partition_column(text);
"""


class Migration(migrations.Migration):
    dependencies = [("core", "0014_jobrun_rerun_permission")]
    operations = [migrations.RunSQL(FUNCTIONS, DROP)]
