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


# The ledger's tests that cannot run on the ledger distributed on Citus (make citus-test), by file and test name, with
# the reason (listed in docs/scaling.md too). None today: every ledger test runs there.
CITUS_SKIPS: dict[str, dict[str, str]] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from django.conf import settings

    if not settings.LEDGER_DISTRIBUTED:
        return
    for item in items:
        skips = CITUS_SKIPS.get(item.path.name, {})
        reason = skips.get(item.name) or skips.get(getattr(item, "originalname", item.name))
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"on Citus: {reason}"))
