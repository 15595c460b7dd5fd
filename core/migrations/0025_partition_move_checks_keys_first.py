"""`mengka_partitions_create` makes the moved rows' deferred key checks before it adds back the keys it dropped for the
move: PostgreSQL alters no table with trigger events pending, and the ledger's transactions, which refer to
themselves (a reversal to the transaction it reverses), get their key back on the very table the rows were copied into
("cannot ALTER TABLE … because it has pending trigger events" on a database whose transactions sat in the DEFAULT
partition, as the demo's dated history does). Nothing else changes.
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
            -- The copied rows' deferred key checks are made now: PostgreSQL alters no table with trigger events
            -- pending, and a table that refers to itself (a reversal to the ledger transaction it reverses) gets its
            -- key back on the very table the rows were copied into. The caller's later statements check at once too.
            SET CONSTRAINTS ALL IMMEDIATE;
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

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION mengka_partitions_create(text, date, integer) SET search_path = %I, pg_temp',
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

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION mengka_partitions_create(text, date, integer) SET search_path = %I, pg_temp',
                   current_schema());
END
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("core", "0024_partition_column_of_routing_decisions")]
    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
