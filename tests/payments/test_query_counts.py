"""The payment hot path's round trips, pinned: a regression that adds a query per payment fails here."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from payments import services
from tests.factories import (
    CardFactory,
    CardProductFactory,
    ChannelFactory,
    MemberBankFactory,
    MerchantFactory,
    PointsProgramFactory,
)

# Transactional, as in production: no test-wide transaction turning commits into savepoints.
pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_create_confirm_capture_with_points_in_twelve_statements(channel_fake: Any, settings: Any) -> None:
    settings.POINTS_PROGRAM_CACHE_TTL = 60  # as in production: the issuer's programme is cached per process
    bank = MemberBankFactory()
    PointsProgramFactory(bank=bank)
    card = CardFactory(product=CardProductFactory(bank=bank))
    merchant = MerchantFactory(sponsor_bank=bank)
    ChannelFactory(acquirer=bank)
    args = {"merchant": merchant, "cardholder": card.cardholder, "card": card, "currency": "CNY", "confirm": True}
    services.payment_create(amount=1_000, idempotency_key="warm-up", **args)  # creates the ledger accounts once
    with CaptureQueriesContext(connection) as queries:
        intent = services.payment_create(amount=1_000, idempotency_key="measured", **args)
    assert intent.status == "succeeded"
    assert intent.points_earned == 20  # 10.00 CNY of dining at 2 points per yuan
    statements = [q["sql"].split()[0] for q in queries.captured_queries]
    # idempotency key · payment · risk: blocked lists (rules and fee schedules are cached with the routing
    # configuration, the points programme per process) · decision · processing (with the risk outcome) · attempt ·
    # outcome · finish: BEGIN, guarded UPDATE, ledger function, COMMIT · idempotency done.
    assert len(statements) == 12, statements
    assert sum(1 for q in queries.captured_queries if "rewards_post_simple" in q["sql"]) == 1
