"""The admin's payment list costs a fixed number of queries whatever the page size."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from payments import services
from tests.factories import (
    PASSWORD,
    CardFactory,
    CardProductFactory,
    ChannelFactory,
    MemberBankFactory,
    MerchantFactory,
)

pytestmark = pytest.mark.django_db


def _pay(count: int, channel_fake: Any) -> None:
    for n in range(count):
        bank = MemberBankFactory()  # a bank, card, merchant and channel each: nothing shared to cache
        card = CardFactory(product=CardProductFactory(bank=bank))
        ChannelFactory(acquirer=bank, code=f"ch-{bank.pk}")
        services.payment_create(
            merchant=MerchantFactory(sponsor_bank=bank),
            cardholder=card.cardholder,
            card=card,
            amount=1_000 + n,
            currency="CNY",
            idempotency_key=f"list-{bank.pk}",
            confirm=True,
        )


@pytest.mark.parametrize("paths", ["payments", "attempts"])
def test_the_payment_lists_cost_the_same_at_5_and_50_rows(channel_fake: Any, alliance_user: Any, paths: str) -> None:
    client = Client()
    assert client.login(username=alliance_user.username, password=PASSWORD)
    url = {
        "payments": "admin:payments_paymentintent_changelist",
        "attempts": "admin:payments_paymentattempt_changelist",
    }[paths]

    def cost() -> int:
        with CaptureQueriesContext(connection) as queries:
            page = client.get(reverse(url))
        assert page.status_code == 200
        return len(queries.captured_queries)

    _pay(5, channel_fake)
    at_five = cost()
    _pay(45, channel_fake)
    assert cost() == at_five
