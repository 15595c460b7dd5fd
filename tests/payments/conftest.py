from __future__ import annotations

from collections.abc import Iterator

import pytest

from payments.connectors import get_connector
from payments.connectors.inprocess import InProcessConnector
from payments.health import InProcessHealth, set_health_store
from payments.risk import InProcessCounters, set_counter_store


@pytest.fixture
def channel_fake() -> Iterator[InProcessConnector]:
    connector = get_connector("inprocess")
    assert isinstance(connector, InProcessConnector)
    connector.clear()
    yield connector
    connector.clear()


@pytest.fixture(autouse=True)
def fresh_health() -> Iterator[InProcessHealth]:
    store = InProcessHealth()
    set_health_store(store)
    yield store
    set_health_store(None)


@pytest.fixture(autouse=True)
def fresh_risk_counters() -> Iterator[InProcessCounters]:
    """In-process counters per test (the Redis store has its own tests, with its own key prefix cleared)."""
    store = InProcessCounters()
    set_counter_store(store)
    yield store
    set_counter_store(None)
