"""Limits under racing requests, with real parallel PostgreSQL connections (and Redis counters)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from core.errors import MengkaError
from payments import methods, services
from payments.models import PaymentIntent
from payments.risk import RedisCounters, set_counter_store
from tests.factories import (
    CardFactory,
    CardProductFactory,
    ChannelFactory,
    MemberBankFactory,
    MerchantFactory,
    make_risk_rule,
)

_keys = itertools.count()
Status = PaymentIntent.Status


def _race(count: int, work: Callable[[], Any]) -> list[Any]:
    results: list[Any] = []
    lock = threading.Lock()
    barrier = threading.Barrier(count)

    def one() -> None:
        try:
            barrier.wait()
            try:
                outcome: Any = work()
            except MengkaError as error:
                outcome = error.code
            with lock:
                results.append(outcome)
        finally:
            connection.close()

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.fixture
def world(channel_fake: Any) -> dict[str, Any]:
    issuer = MemberBankFactory()
    card = CardFactory(product=CardProductFactory(bank=issuer))
    merchant = MerchantFactory()
    ChannelFactory(acquirer=merchant.sponsor_bank)
    return {"card": card, "merchant": merchant}


@pytest.mark.django_db(transaction=True)
def test_racing_agreement_payments_never_pass_the_monthly_limit(world: dict[str, Any]) -> None:
    granted = methods.agreement_grant(
        cardholder=world["card"].cardholder,
        merchant=world["merchant"],
        card=world["card"],
        limit_per_payment=1_000,
        limit_per_month=5_000,
    )

    def pay() -> str:
        return services.payment_create(
            merchant=world["merchant"],
            agreement_token=granted.token,
            amount=1_000,
            currency="CNY",
            idempotency_key=f"race-agr-{next(_keys)}",
            confirm=True,
        ).status

    results = _race(12, pay)
    assert sorted(results) == sorted([Status.SUCCEEDED] * 5 + ["agreement_monthly_limit_exceeded"] * 7)
    assert PaymentIntent.objects.filter(agreement=granted.agreement).count() == 5


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_racing_payments_never_pass_a_daily_cap_counted_in_redis(world: dict[str, Any]) -> None:
    from django.conf import settings

    store = RedisCounters(settings.REDIS_URL)
    store.prefix = f"test:cap:{next(_keys)}:{id(store)}"
    set_counter_store(store)
    make_risk_rule(name="daily cap", kind="total", subject="cardholder", window="day", threshold=10_000)

    def pay() -> str:
        return services.payment_create(
            merchant=world["merchant"],
            cardholder=world["card"].cardholder,
            card=world["card"],
            amount=1_000,
            currency="CNY",
            idempotency_key=f"race-cap-{next(_keys)}",
            confirm=True,
        ).status

    try:
        results = _race(16, pay)
    finally:
        store.reset()
    assert sorted(results) == sorted([Status.SUCCEEDED] * 10 + [Status.FAILED] * 6)
    failed = PaymentIntent.objects.filter(status=Status.FAILED)
    assert set(failed.values_list("failure_code", flat=True)) == {"risk_blocked"}
