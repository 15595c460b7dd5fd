"""PostgreSQL only: `rewards_post_simple`, the one-round-trip path for a plain earn or redeem (the Python service in
rewards/services.py is its only caller; what it hands back takes the ORM path). Same rules as the ORM path:
idempotency key, locks in account id order, guarded balance update, lots soonest-expiry first, entries with running
balances."""

from django.db import migrations

FUNCTION = r"""
CREATE OR REPLACE FUNCTION rewards_post_simple(
    p_kind text, p_key text, p_hash text, p_cardholder bigint, p_unit text, p_bank bigint, p_shard integer,
    p_amount bigint, p_earned date, p_expires date, p_program bigint, p_meta jsonb
) RETURNS TABLE (txn_id bigint, outcome text, txn_hash text, txn_created timestamptz)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_wallet bigint; v_bank bigint; v_txn bigint; v_hash text; v_created timestamptz := now();
    v_wallet_after bigint; v_bank_after bigint; v_need bigint; v_take bigint; r record;
BEGIN
    v_created := now();
    SELECT a.id INTO v_wallet FROM rewards_account a
     WHERE a.owner_kind = 'cardholder' AND a.owner_id = p_cardholder AND a.purpose = 'points' AND a.unit = p_unit
       AND a.shard = 0;
    SELECT a.id INTO v_bank FROM rewards_account a
     WHERE a.owner_kind = 'bank' AND a.owner_id = p_bank
       AND a.purpose = CASE p_kind WHEN 'earn' THEN 'issuance' ELSE 'redemption' END
       AND a.unit = p_unit AND a.shard = p_shard;
    IF v_wallet IS NULL OR v_bank IS NULL THEN
        RETURN QUERY SELECT NULL::bigint, 'fallback'::text, NULL::text, NULL::timestamptz; RETURN;
    END IF;
    IF p_kind = 'earn' AND EXISTS (
        SELECT 1 FROM rewards_account a WHERE a.owner_kind = 'cardholder' AND a.owner_id = p_cardholder
           AND a.purpose = 'debt' AND a.unit = p_unit AND a.posted < 0) THEN
        RETURN QUERY SELECT NULL::bigint, 'fallback'::text, NULL::text, NULL::timestamptz; RETURN;  -- debt first
    END IF;
    INSERT INTO rewards_ledgertransaction
        (kind, idempotency_key, request_hash, points, reversed_points, metadata, actor_label, created_at)
    VALUES (CASE p_kind WHEN 'earn' THEN 'earn' ELSE 'spend' END, p_key, p_hash, p_amount, 0, p_meta, 'system',
            v_created)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id INTO v_txn;
    IF v_txn IS NULL THEN
        SELECT t.id, t.request_hash, t.created_at INTO v_txn, v_hash, v_created
          FROM rewards_ledgertransaction t WHERE t.idempotency_key = p_key;
        RETURN QUERY SELECT v_txn, 'replay'::text, v_hash, v_created; RETURN;
    END IF;
    -- Row locks in account id order, as every posting takes them.
    IF p_kind = 'earn' THEN
        IF v_wallet < v_bank THEN
            UPDATE rewards_account SET posted = posted + p_amount, version = version + 1 WHERE id = v_wallet
                RETURNING posted INTO v_wallet_after;
            UPDATE rewards_account SET posted = posted - p_amount, version = version + 1 WHERE id = v_bank
                RETURNING posted INTO v_bank_after;
        ELSE
            UPDATE rewards_account SET posted = posted - p_amount, version = version + 1 WHERE id = v_bank
                RETURNING posted INTO v_bank_after;
            UPDATE rewards_account SET posted = posted + p_amount, version = version + 1 WHERE id = v_wallet
                RETURNING posted INTO v_wallet_after;
        END IF;
        INSERT INTO rewards_lot (account_id, program_id, earned_by_id, amount, remaining, earned_on, expires_on)
        VALUES (v_wallet, p_program, v_txn, p_amount, p_amount, p_earned, p_expires);
        INSERT INTO rewards_entry (transaction_id, account_id, unit, amount, balance_after)
        VALUES (v_txn, v_bank, p_unit, -p_amount, v_bank_after), (v_txn, v_wallet, p_unit, p_amount, v_wallet_after);
    ELSE
        IF v_bank < v_wallet THEN
            PERFORM 1 FROM rewards_account WHERE id = v_bank FOR UPDATE;
        END IF;
        UPDATE rewards_account SET posted = posted - p_amount, version = version + 1
         WHERE id = v_wallet AND posted - held >= p_amount
        RETURNING posted INTO v_wallet_after;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'ledger:insufficient' USING ERRCODE = 'P0001';
        END IF;
        UPDATE rewards_account SET posted = posted + p_amount, version = version + 1 WHERE id = v_bank
            RETURNING posted INTO v_bank_after;
        v_need := p_amount;
        FOR r IN SELECT l.id, l.remaining FROM rewards_lot l
                  WHERE l.account_id = v_wallet AND l.remaining > 0 ORDER BY l.expires_on, l.id LOOP
            EXIT WHEN v_need = 0;
            v_take := LEAST(v_need, r.remaining);
            UPDATE rewards_lot SET remaining = remaining - v_take WHERE id = r.id;
            INSERT INTO rewards_lotmovement (transaction_id, lot_id, amount) VALUES (v_txn, r.id, -v_take);
            v_need := v_need - v_take;
        END LOOP;
        IF v_need <> 0 THEN
            RAISE EXCEPTION 'ledger:lots do not cover wallet %', v_wallet USING ERRCODE = 'P0001';
        END IF;
        INSERT INTO rewards_entry (transaction_id, account_id, unit, amount, balance_after)
        VALUES (v_txn, v_wallet, p_unit, -p_amount, v_wallet_after), (v_txn, v_bank, p_unit, p_amount, v_bank_after);
    END IF;
    RETURN QUERY SELECT v_txn, 'posted'::text, p_hash, v_created;
END
$fn$;
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTION, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "DROP FUNCTION IF EXISTS rewards_post_simple(text, text, text, bigint, text, bigint, integer, bigint, date,"
            " date, bigint, jsonb)"
        )


class Migration(migrations.Migration):
    dependencies = [("rewards", "0002_schedules_and_permissions")]
    operations = [migrations.RunPython(forwards, backwards)]
