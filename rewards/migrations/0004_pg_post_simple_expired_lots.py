"""PostgreSQL only: `rewards_post_simple` hands a spend back to the ORM path when the wallet holds lots past their
last valid day (`p_earned` carries the business date for a spend), so that the service expires them before spending:
points past their date are never spendable, even before the daily expiry job has run."""

import importlib

from django.db import migrations

_PREVIOUS = importlib.import_module("rewards.migrations.0003_pg_post_simple").FUNCTION
_ANCHOR = """    INSERT INTO rewards_ledgertransaction
        (kind, idempotency_key"""
_CHECK = """    IF p_kind <> 'earn' AND EXISTS (
        SELECT 1 FROM rewards_lot l WHERE l.account_id = v_wallet AND l.remaining > 0 AND l.expires_on < p_earned) THEN
        RETURN QUERY SELECT NULL::bigint, 'fallback'::text, NULL::text, NULL::timestamptz; RETURN;  -- expire first
    END IF;
"""
assert _PREVIOUS.count(_ANCHOR) == 1
# The 0003 function with one check before the transaction row is written (both texts are fixed history).
FUNCTION = _PREVIOUS.replace(_ANCHOR, _CHECK + _ANCHOR)


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FUNCTION, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(_PREVIOUS, params=None)


class Migration(migrations.Migration):
    dependencies = [("rewards", "0003_pg_post_simple")]
    operations = [migrations.RunPython(forwards, backwards)]
