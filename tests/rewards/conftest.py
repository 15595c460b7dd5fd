"""The ledger's tests start with the exchange policy a fresh database has: the first version its migration seeds."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _first_exchange_policy(request: pytest.FixtureRequest) -> None:
    """A transactional test ends by emptying every table, the migration's first exchange policy version with them:
    put it back for the tests that follow, as the migration wrote it."""
    if request.node.get_closest_marker("django_db") is None:
        return
    from importlib import import_module

    from rewards.models import ExchangePolicy

    migration = import_module("rewards.migrations.0010_exchange_policy")
    ExchangePolicy.objects.get_or_create(
        effective_from=migration.FIRST_VERSION_FROM, defaults={"fee_rate": "0.02", "minimum_points": 100}
    )


# The ledger's tests that cannot run on the ledger distributed on Citus (make citus-test), with the reason: listed in
# docs/scaling.md too.
SWEEP = "the sweep locks many wallets' accounts in one SELECT … FOR UPDATE, which Citus runs on one shard only"
ACCOUNT_KEY = "creates accounts with ON CONFLICT on their five-column key, not unique on a table distributed by id"
BULK = f"the bulk earn {ACCOUNT_KEY}, and locks many wallets' accounts in one statement"
CITUS_SKIPS = {
    "test_ledger_interleavings.py": {
        "test_a_hold_past_its_time_is_refused_at_capture": SWEEP,
        "test_expiry_waiting_for_a_capture_never_takes_held_points": SWEEP,
        "test_hold_sweep_skips_a_hold_captured_meanwhile_and_carries_on": SWEEP,
    },
    "test_ledger_query_counts.py": {
        "test_a_plain_earn_stays_within_its_statements": "on Citus a posting locks its accounts one statement each",
        "test_expiry_in_chunks_records_its_progress_on_the_job_run": SWEEP,
        "test_hold_sweep_statements_do_not_grow_with_wallets": SWEEP,
        "test_lot_expiry_statements_do_not_grow_with_wallets": SWEEP,
    },
    "test_ledger_services.py": {
        "test_a_hold_expires_overdue_lots_first_and_a_later_expiry_the_same_day_posts_again": SWEEP,
        "test_expiry_job_one_transaction_per_wallet_and_respects_holds": SWEEP,
        "test_hold_void_and_timeout": SWEEP,
        "test_points_past_their_date_are_not_spendable_before_the_job_runs": SWEEP,
        "test_jobs_run_through_job_run": SWEEP,
        "test_bulk_earn_one_transaction_pays_debts_first_and_replays": f"{ACCOUNT_KEY}; {SWEEP}",
    },
    "test_ledger_concurrency.py": {
        "test_mixed_soak_keeps_every_invariant": f"runs the sweeps and the bulk earn: {SWEEP}",
        "test_one_key_from_ten_parallel_callers_posts_once[bulk]": BULK,
        "test_one_key_with_other_parameters_is_an_idempotency_conflict[bulk]": BULK,
    },
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from django.conf import settings

    if not settings.LEDGER_DISTRIBUTED:
        return
    for item in items:
        skips = CITUS_SKIPS.get(item.path.name, {})
        reason = skips.get(item.name) or skips.get(getattr(item, "originalname", item.name))
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"on Citus: {reason}"))
