from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from rest_framework.test import APIClient

from merchants.models import Merchant
from merchants.services import api_key_create
from payments.connectors import get_connector
from payments.connectors.inprocess import InProcessConnector
from payments.health import InProcessHealth, set_health_store
from tests.factories import (
    CardFactory,
    CardProductFactory,
    ChannelFactory,
    MemberBankFactory,
    MerchantFactory,
    PointsProgramFactory,
)

_keys = itertools.count()


@pytest.fixture(autouse=True)
def local_webhooks(settings: Any) -> None:
    """The tests' webhook receiver listens on 127.0.0.1."""
    settings.WEBHOOK_ALLOW_PRIVATE_HOSTS = True


@pytest.fixture(autouse=True)
def fresh_health() -> Iterator[InProcessHealth]:
    store = InProcessHealth()
    set_health_store(store)
    yield store
    set_health_store(None)


@pytest.fixture
def channel_fake() -> Iterator[InProcessConnector]:
    connector = get_connector("inprocess")
    assert isinstance(connector, InProcessConnector)
    connector.clear()
    yield connector
    connector.clear()


class Api:
    """A client holding one merchant's key; every call returns (status, json body)."""

    def __init__(self, raw_key: str) -> None:
        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
        self.raw_key = raw_key

    def get(self, path: str, params: dict[str, Any] | None = None) -> tuple[int, Any]:
        response = self.client.get(f"/api/v1/{path}", params or {})
        return response.status_code, response.json()

    def post(self, path: str, body: Any = None, *, key: str | None = None, **extra: Any) -> tuple[int, Any]:
        headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
        response = self.client.post(
            f"/api/v1/{path}", body if body is not None else {}, format="json", **headers, **extra
        )
        return response.status_code, response.json()

    def raw(self, method: str, path: str, **kwargs: Any) -> Any:
        return getattr(self.client, method)(f"/api/v1/{path}", **kwargs)


@dataclass
class World:
    merchant: Merchant
    card: Any
    api: Api
    issuer: Any
    fake: InProcessConnector


def idem() -> str:
    return f"k-{next(_keys)}"


def new_api(merchant: Merchant, *, mode: str = "test", scope: str = "write") -> Api:
    return Api(api_key_create(merchant=merchant, mode=mode, scope=scope).raw_key)


@pytest.fixture
def world(channel_fake: InProcessConnector) -> World:
    issuer = MemberBankFactory()
    acquirer = MemberBankFactory()
    PointsProgramFactory(bank=issuer)
    card = CardFactory(product=CardProductFactory(bank=issuer, earning_rates={"dining": "2", "other": "1"}))
    merchant = MerchantFactory(sponsor_bank=acquirer, spend_category="dining")
    ChannelFactory(acquirer=acquirer, code="acq-main")
    ChannelFactory(acquirer=acquirer, code="acq-main-sandbox", sandbox=True)  # carries the test keys' payments
    return World(merchant=merchant, card=card, api=new_api(merchant), issuer=issuer, fake=channel_fake)


@pytest.fixture
def other(world: World) -> World:
    """A second merchant with its own key and card (same channels)."""
    merchant = MerchantFactory(sponsor_bank=world.merchant.sponsor_bank)
    card = CardFactory(product=CardProductFactory(bank=world.issuer))
    return World(merchant=merchant, card=card, api=new_api(merchant), issuer=world.issuer, fake=world.fake)


def pay_body(card: Any, amount: int = 10000, **extra: Any) -> dict[str, Any]:
    return {
        "amount": amount,
        "currency": "CNY",
        "payment_method": {"type": "card_token", "token": card.token},
        "confirm": True,
        **extra,
    }


def agreement_body(card: Any, merchant: Merchant, amount: int = 10000, **extra: Any) -> dict[str, Any]:
    """A body a live key may send: an agreement the card's holder granted the merchant (card_token is test-only,
    and a test-mode payment earns no points)."""
    from payments.methods import agreement_grant

    granted = agreement_grant(
        cardholder=card.cardholder, merchant=merchant, card=card, limit_per_payment=10**9, limit_per_month=10**10
    )
    return {
        "amount": amount,
        "currency": "CNY",
        "payment_method": {"type": "agreement", "token": granted.token},
        "confirm": True,
        **extra,
    }


@pytest.fixture
def keep_db_connection() -> Iterator[None]:
    """A WSGI request outside Django's test client would close the test's connection when it finishes."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


KEY_LINK = re.compile(r"http://testserver(/merchants/keys/[A-Za-z0-9_-]+)")


def key_links(body: str) -> list[str]:
    """The one-time key links in an email's body (paths)."""
    return KEY_LINK.findall(body)


def collect_keys(body: str) -> list[str]:
    """Opens each link in the email as the merchant would, reveals the key (POST) and returns the raw keys."""
    from django.test import Client

    merchant_browser = Client()
    keys = []
    for link in key_links(body):
        response = merchant_browser.post(link)
        assert response.status_code == 200
        keys.append(response.context["collected"].raw_key)
    return keys
