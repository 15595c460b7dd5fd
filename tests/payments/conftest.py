from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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


@pytest.fixture
def points_world(channel_fake: InProcessConnector) -> dict[str, Any]:
    """A card earning 1 point per yuan at an issuer whose points are worth CNY 0.01, 2,000 points in its wallet, a
    merchant in the `other` category and a channel at its sponsor bank."""
    from decimal import Decimal

    from rewards import services as ledger
    from tests.factories import (
        CardFactory,
        CardProductFactory,
        ChannelFactory,
        MemberBankFactory,
        MerchantFactory,
        PointsProgramFactory,
    )

    issuer = MemberBankFactory()
    program = PointsProgramFactory(bank=issuer, point_value_cny=Decimal("0.01"))
    card = CardFactory(product=CardProductFactory(bank=issuer, earning_rates={"other": "1"}))
    merchant = MerchantFactory(spend_category="other")
    ChannelFactory(acquirer=merchant.sponsor_bank)
    ledger.points_earn(
        cardholder_id=card.cardholder_id, program=program, amount=2_000, idempotency_key=f"world:{card.pk}"
    )
    return {"card": card, "merchant": merchant, "program": program, "issuer": issuer, "fake": channel_fake}


@pytest.fixture
def recon_world(points_world: dict[str, Any]) -> dict[str, Any]:
    """The points world with its merchant's channel and the default fee schedule (0.6 %, shared 60 / 25 / 10 / 5),
    in force since yesterday."""
    import datetime as dt
    from decimal import Decimal

    from django.utils import timezone

    from payments.fees import fee_schedule_create
    from payments.models import Channel

    fee_schedule_create(
        mdr_percent=Decimal("0.6"),
        issuer_share=Decimal("60"),
        acquirer_share=Decimal("25"),
        channel_share=Decimal("10"),
        alliance_share=Decimal("5"),
        effective_from=timezone.now() - dt.timedelta(days=1),
    )
    return {**points_world, "channel": Channel.objects.get(acquirer=points_world["merchant"].sponsor_bank)}
