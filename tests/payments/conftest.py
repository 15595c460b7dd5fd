from __future__ import annotations

from collections.abc import Iterator

import pytest

from payments.connectors import get_connector
from payments.connectors.inprocess import InProcessConnector


@pytest.fixture
def channel_fake() -> Iterator[InProcessConnector]:
    connector = get_connector("inprocess")
    assert isinstance(connector, InProcessConnector)
    connector.clear()
    yield connector
    connector.clear()
