from __future__ import annotations

from collections.abc import Iterator

import pytest

from payments.connectors import get_connector
from payments.connectors.inprocess import InProcessConnector
from payments.health import InProcessHealth, set_health_store


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
