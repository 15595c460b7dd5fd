"""Payments when Redis fails: unreachable, silent, gone in the middle of a payment, back again, or flushed.

The risk counters fall back to in-process counters (limits still hold, per process), the breakers to per-process
breakers; a payment completes or fails as it would have, never with an error, never waiting on Redis."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings

from payments import services
from payments.health import BreakerPolicy, RedisHealth, health_store
from payments.models import PaymentIntent
from payments.risk import RedisCounters, counter_store
from tests.factories import (
    CardFactory,
    CardProductFactory,
    ChannelFactory,
    MemberBankFactory,
    MerchantFactory,
    PointsProgramFactory,
    make_risk_rule,
)
from tests.redis_faults import RedisProxy, SilentServer, no_hang

pytestmark = pytest.mark.django_db
Status = PaymentIntent.Status
_keys = itertools.count()


@pytest.fixture
def world(channel_fake: Any) -> dict[str, Any]:
    issuer, acquirer = MemberBankFactory(), MemberBankFactory()
    PointsProgramFactory(bank=issuer)
    card = CardFactory(product=CardProductFactory(bank=issuer, earning_rates={"other": "1"}))
    merchant = MerchantFactory(sponsor_bank=acquirer, spend_category="other")
    ChannelFactory(code="cheap", acquirer=acquirer, fee_percent="0.1", breaker_consecutive_failures=1)
    ChannelFactory(code="dear", acquirer=acquirer, fee_percent="0.9")
    return {"card": card, "merchant": merchant, "fake": channel_fake}


def pay(world: dict[str, Any], amount: int = 1_000) -> PaymentIntent:
    card = world["card"]
    return services.payment_create(
        merchant=world["merchant"],
        cardholder=card.cardholder,
        card=card,
        amount=amount,
        currency="CNY",
        idempotency_key=f"redis-faults-{next(_keys)}",
        confirm=True,
    )


def test_payments_complete_with_redis_down_on_in_process_counters_and_breakers(
    world: dict[str, Any], redis_down: None
) -> None:
    make_risk_rule(name="3 a minute", kind="count", subject="card", window="minute", threshold=3, action="block")
    fake = world["fake"]
    with no_hang():
        first = pay(world)
        assert (first.status, first.risk_outcome) == (Status.SUCCEEDED, "allow")  # not sent to review
        assert first.attempts.get().channel.code == "cheap"
        # The cheap channel fails (nothing charged): the next carries the payment, and cheap's breaker opens.
        fake.down_channels.add("cheap")
        failed_over = pay(world)
        fake.down_channels.clear()
        assert failed_over.status == Status.SUCCEEDED
        assert [attempt.channel.code for attempt in failed_over.attempts.order_by("sequence")] == ["cheap", "dear"]
        # The breaker holds in this process: cheap is left out while it is open.
        routed = pay(world)
        assert routed.status == Status.SUCCEEDED
        assert routed.attempts.get().channel.code == "dear"
        assert {c["channel"]: c["dropped"] for c in routed.routing_decisions.get().candidates}[
            "cheap"
        ] == "circuit open"
        # The velocity limit still holds, counted in this process.
        fourth = pay(world)
        assert (fourth.status, fourth.failure_code) == (Status.FAILED, "risk_blocked")
    counters, health = counter_store(), health_store()
    assert isinstance(counters, RedisCounters)
    assert isinstance(health, RedisHealth)
    assert health.local.state("cheap", BreakerPolicy()) == "open"


def test_a_redis_that_never_answers_does_not_hold_a_payment(
    world: dict[str, Any], point_redis_at: Callable[[str], None], silent_redis: SilentServer
) -> None:
    point_redis_at(silent_redis.url)
    with no_hang():  # every client gives up after its timeout (REDIS_SOCKET_TIMEOUT), then leaves Redis alone
        assert [pay(world).status for _ in range(3)] == [Status.SUCCEEDED] * 3


def test_the_fallback_warns_once_not_per_payment(
    world: dict[str, Any], redis_down: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="core.redis_fallback"):
        assert [pay(world).status for _ in range(4)] == [Status.SUCCEEDED] * 4
    warned = [record.getMessage() for record in caplog.records if record.name == "core.redis_fallback"]
    assert sum("risk_counters falls back to in-process velocity counters" in line for line in warned) == 1
    assert sum("breakers falls back to per-process circuit breakers" in line for line in warned) == 1


@pytest.mark.redis
def test_redis_lost_between_the_channel_and_the_recording_leaves_no_payment_processing(
    world: dict[str, Any], point_redis_at: Callable[[str], None], redis_proxy: RedisProxy, monkeypatch: Any
) -> None:
    """Redis goes away after the counters are read and the channel has charged, before its outcome is recorded."""
    point_redis_at(redis_proxy.url)
    fake = world["fake"]
    authorize = fake.authorize

    def charged_then_redis_gone(request: Any) -> Any:
        response = authorize(request)
        redis_proxy.stop()
        return response

    monkeypatch.setattr(fake, "authorize", charged_then_redis_gone)
    with no_hang():
        paid = pay(world)
    assert paid.status == Status.SUCCEEDED
    assert fake.charge_count() == 1
    health = health_store()
    assert isinstance(health, RedisHealth)
    assert health.local.success_rate("cheap", "card") == (1.0, 1)  # the outcome, recorded in the process


@pytest.mark.redis
def test_when_redis_comes_back_it_is_used_again_without_a_restart(
    world: dict[str, Any], point_redis_at: Callable[[str], None], redis_proxy: RedisProxy, settings: Any
) -> None:
    settings.REDIS_RECHECK_SECONDS = 0  # try Redis again at the next call
    point_redis_at(redis_proxy.url)
    shared = redis.Redis.from_url(redis_proxy.upstream_url)
    assert pay(world).status == Status.SUCCEEDED
    counters = counter_store()
    assert isinstance(counters, RedisCounters)
    card_day = list(shared.keys(f"{counters.prefix}:card:{world['card'].pk}:day:*:count"))
    assert [int(shared.get(key) or 0) for key in card_day] == [1]

    redis_proxy.stop()
    with no_hang():
        assert pay(world).status == Status.SUCCEEDED  # counted in the process
    assert [int(shared.get(key) or 0) for key in card_day] == [1]

    redis_proxy.start()
    assert pay(world).status == Status.SUCCEEDED
    assert [int(shared.get(key) or 0) for key in card_day] == [2]  # in Redis again


@pytest.mark.redis
def test_a_flushed_redis_changes_nothing_but_the_counts(
    world: dict[str, Any], point_redis_at: Callable[[str], None], monkeypatch: Any
) -> None:
    """The suite's own Redis db (REDIS_URL), flushed between payments and in the middle of one: the counters start
    again, the breakers are closed, the routing configuration's version begins a new series; no payment fails."""
    point_redis_at(django_settings.REDIS_URL)
    shared = redis.Redis.from_url(django_settings.REDIS_URL)
    make_risk_rule(name="3 a minute", kind="count", subject="card", window="minute", threshold=3, action="review")
    assert [pay(world).risk_outcome for _ in range(3)] == ["allow"] * 3
    shared.flushdb()
    assert [pay(world).risk_outcome for _ in range(3)] == ["allow"] * 3  # counted from zero again
    assert pay(world).risk_outcome == "review"  # the fourth since the flush
    shared.flushdb()

    world["fake"].down_channels.add("cheap")
    opened = pay(world)  # cheap fails and opens; dear carries the payment
    world["fake"].down_channels.clear()
    assert opened.status == Status.SUCCEEDED
    health = health_store()
    assert isinstance(health, RedisHealth)
    assert health.state("cheap", BreakerPolicy()) == "open"
    shared.flushdb()
    assert health.state("cheap", BreakerPolicy()) == "closed"

    fake = world["fake"]
    authorize = fake.authorize

    def flushed_while_charging(request: Any) -> Any:
        shared.flushdb()
        shared.script_flush()  # as a restart without persistence loses them
        return authorize(request)

    monkeypatch.setattr(fake, "authorize", flushed_while_charging)
    paid = pay(world)
    assert paid.status == Status.SUCCEEDED
    assert paid.attempts.get().channel.code == "cheap"
    assert health.success_rate("cheap", "card") == (1.0, 1)  # recorded in Redis after the flush
