"""Partitioned tables that another partitioned table refers to (merchants' events, which their webhook deliveries refer
to by `(event_id, event_created_at)`): the functions move and archive their months all the same.

PostgreSQL refuses to detach a partition whose rows are referred to, and the move detaches the DEFAULT partition. So
`mengka_partitions_create` now drops the foreign keys that refer to the table for the move and adds them again after
it, in the same transaction; adding one checks it over the whole referring table, which is slow on a large one, but a
move happens only when rows fell outside the prepared months (the daily job did not run for months, a frozen clock).
A month of events can be detached only once no delivery refers to it, so the job handles deliveries before events
(core/partitions.py, `PARTITIONED`), and `mengka_partition_detach` now drops an archive table's foreign keys to
partitioned tables: the archived deliveries keep no key to their events, whose month can then be archived in turn.
"""

from django.db import migrations

FORWARD = r"""
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
    v_refs text[];
    v_ref text;
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
            -- PostgreSQL refuses to detach a partition whose rows another table's foreign key refers to: such keys
            -- are dropped for the move and added again (checked again, over the referring table) once it is done.
            SELECT coalesce(array_agg(format('ALTER TABLE %s ADD CONSTRAINT %I %s', conrelid::regclass, conname,
                                             pg_get_constraintdef(oid))), '{}')
              INTO v_refs
              FROM pg_constraint
             WHERE contype = 'f' AND conparentid = 0 AND confrelid = to_regclass(format('%I', p_table));
            FOR v_ref IN SELECT format('ALTER TABLE %s DROP CONSTRAINT %I', conrelid::regclass, conname)
                           FROM pg_constraint
                          WHERE contype = 'f' AND conparentid = 0 AND confrelid = to_regclass(format('%I', p_table))
            LOOP
                EXECUTE v_ref;
            END LOOP;
            EXECUTE format('ALTER TABLE %I DETACH PARTITION %I', p_table, v_default);
            EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)', v_name, p_table, v_low, v_high);
            EXECUTE format('INSERT INTO %I SELECT * FROM %I WHERE %I >= $1 AND %I < $2', v_name, v_default, v_column, v_column)
              USING v_low, v_high;
            EXECUTE format('DELETE FROM %I WHERE %I >= $1 AND %I < $2', v_default, v_column, v_column) USING v_low, v_high;
            EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I DEFAULT', p_table, v_default);
            FOREACH v_ref IN ARRAY v_refs LOOP
                EXECUTE v_ref;
            END LOOP;
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
    v_ref text;
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
    -- An archived month of a table that refers to another partitioned one (deliveries to events) keeps no key to it,
    -- so that the other's month can be archived in turn.
    FOR v_ref IN SELECT format('ALTER TABLE %I DROP CONSTRAINT %I', v_archive, conname)
                   FROM pg_constraint
                  WHERE contype = 'f' AND conrelid = to_regclass(format('%I', v_archive))
                    AND mengka_partition_column((SELECT relname FROM pg_class WHERE oid = confrelid)) IS NOT NULL
    LOOP
        EXECUTE v_ref;
    END LOOP;
    RETURN v_archive;
END
$$;

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION mengka_partitions_create(text, date, integer) SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION mengka_partition_detach(text, date) SET search_path = %I, pg_temp',
                   current_schema());
END
$$;
"""

BACKWARD = r"""
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

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION mengka_partitions_create(text, date, integer) SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION mengka_partition_detach(text, date) SET search_path = %I, pg_temp',
                   current_schema());
END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("core", "0017_partition_columns_of_attempts_and_events")]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
