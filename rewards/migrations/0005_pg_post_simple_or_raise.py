"""PostgreSQL only: `rewards_post_simple_or_raise`, `rewards_post_simple` for a statement of another app to carry
(`rewards.services.CarriedEarn`). Where the plain function answers `fallback` (the ORM path must post it) or replays
a key stored with other parameters, this one raises, so that the carrying statement writes nothing and its caller
posts the earn the usual way."""

from django.db import migrations

FUNCTION = r"""
CREATE OR REPLACE FUNCTION rewards_post_simple_or_raise(
    p_kind text, p_key text, p_hash text, p_cardholder bigint, p_unit text, p_bank bigint, p_shard integer,
    p_amount bigint, p_earned date, p_expires date, p_program bigint, p_meta jsonb
) RETURNS TABLE (txn_id bigint, outcome text, txn_hash text, txn_created timestamptz)
LANGUAGE plpgsql AS $fn$
DECLARE r record;
BEGIN
    SELECT * INTO r FROM rewards_post_simple(
        p_kind, p_key, p_hash, p_cardholder, p_unit, p_bank, p_shard, p_amount, p_earned, p_expires, p_program, p_meta);
    IF r.outcome = 'fallback' THEN
        RAISE EXCEPTION 'ledger:not-plain' USING ERRCODE = 'P0001';
    END IF;
    IF r.txn_hash <> p_hash THEN
        RAISE EXCEPTION 'ledger:conflict' USING ERRCODE = 'P0001';
    END IF;
    RETURN QUERY SELECT r.txn_id, r.outcome, r.txn_hash, r.txn_created;
END
$fn$;
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTION, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "DROP FUNCTION IF EXISTS rewards_post_simple_or_raise(text, text, text, bigint, text, bigint, integer,"
            " bigint, date, date, bigint, jsonb)"
        )


class Migration(migrations.Migration):
    dependencies = [("rewards", "0004_pg_post_simple_expired_lots")]
    operations = [migrations.RunPython(forwards, backwards)]
