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
