"""Reading breakers: every candidate's in one round trip, or beforehand with the risk counters (one Redis round trip
for both), and a payment's Redis round trips pinned."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from django.conf import settings as django_settings

from core.calendar import load_calendar
from payments import risk, routing, services
from payments.health import BreakerPolicy, BreakerState, InProcessHealth, RedisHealth, set_health_store
from payments.models import PaymentIntent
from payments.risk import RedisCounters, set_counter_store
from tests.factories import (
    CardFactory,
    CardProductFactory,
    ChannelFactory,
    MemberBankFactory,
    MerchantFactory,
    route_context,
)

pytestmark = pytest.mark.django_db
_keys = itertools.count()
POLICY = BreakerPolicy(consecutive_failures=1, failure_rate=1.0, window=10, cooldown_seconds=30)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class CountingHealth(InProcessHealth):
    """Counts the reads of breakers `decide` makes; one channel at a time is refused."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[list[str]] = []

    def states(self, channels: Sequence[tuple[str, BreakerPolicy]]) -> dict[str, BreakerState]:
        self.reads.append([code for code, _ in channels])
        return super().states(channels)


@pytest.fixture
def three() -> dict[str, Any]:
    issuer = MemberBankFactory()
    for code, fee in (("a", "0.1"), ("b", "0.2"), ("c", "0.3")):
        ChannelFactory(code=code, acquirer=MemberBankFactory(), fee_percent=fee, breaker_consecutive_failures=1)
    context = route_context(issuer_id=issuer.pk)
    return {"context": context, "config": routing.load_config(force=True)}


def test_decide_reads_every_candidates_breaker_in_one_call(three: dict[str, Any]) -> None:
    health = CountingHealth()
    health.record("b", "card", False, POLICY)  # opens b
    decision = routing.decide(three["context"], three["config"], health)
    assert health.reads == [["a", "b", "c"]]
    assert decision.chosen_codes == ["a", "c"]
    assert {c.channel: c.dropped for c in decision.candidates}["b"] == "circuit open"
    assert decision.breakers == {"a": "closed", "b": "open", "c": "closed"}
    screened = routing.screen(three["context"], three["config"])
    assert [code for code, _ in screened.breakers_to_read()] == ["a", "b", "c"]
    assert routing.decide(three["context"], three["config"], health, screened=screened).chosen_codes == ["a", "c"]


def test_decide_takes_the_breakers_read_beforehand_and_reads_only_what_is_missing(three: dict[str, Any]) -> None:
    health = CountingHealth()
    health.record("c", "card", False, POLICY)  # opens c: read, since it is not given
    given = {"a": BreakerState.OPEN, "b": BreakerState.CLOSED}
    decision = routing.decide(three["context"], three["config"], health, breakers=given)
    assert health.reads == [["c"]]
    assert decision.chosen_codes == ["b"]
    health.reads.clear()
    everything = {"a": BreakerState.CLOSED, "b": BreakerState.CLOSED, "c": BreakerState.CLOSED}
    assert routing.decide(three["context"], three["config"], health, breakers=everything).chosen_codes == [
        "a",
        "b",
        "c",
    ]
    assert health.reads == []


# --- Redis ----------------------------------------------------------------------------------------------------------


class RoundTrips:
    """Counts what the Redis client sends: one write per command, or per pipeline."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import redis.connection

        self.count = 0
        original = redis.connection.AbstractConnection.send_packed_command

        def counted(connection: Any, command: Any, check_health: bool = True) -> None:
            self.count += 1
            original(connection, command, check_health)

        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)


@pytest.fixture
def redis_stores(settings: Any) -> Iterator[tuple[RedisCounters, RedisHealth, Clock]]:
    # Counting a payment's own round trips: the routing configuration and the calendar are held by the process.
    settings.ROUTING_CONFIG_TTL = settings.CALENDAR_CACHE_TTL = 60
    clock = Clock()
    counters, health = RedisCounters(django_settings.REDIS_URL), RedisHealth(django_settings.REDIS_URL, clock=clock)
    counters.prefix = f"test:risk:{next(_keys)}:{id(counters)}"
    health.prefix = f"test:health:{next(_keys)}:{id(health)}"
    counters.client.ping()  # connected: a new connection's own commands are not counted
    health.client.ping()
    set_counter_store(counters)
    set_health_store(health)
    yield counters, health, clock
    counters.reset()
    health.reset()
    set_counter_store(None)
    set_health_store(None)


@pytest.mark.redis
def test_redis_reads_several_breakers_in_one_round_trip(
    redis_stores: tuple[RedisCounters, RedisHealth, Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    _counters, health, clock = redis_stores
    health.record("cooled", "card", False, POLICY)
    clock.now += 10
    health.record("open", "card", False, POLICY)
    clock.now += 25  # 35 s after "cooled" opened (its cool-down is over), 25 s after "open" did
    trips = RoundTrips(monkeypatch)
    states = health.states([("open", POLICY), ("cooled", POLICY), ("never", POLICY)])
    assert states == {"open": "open", "cooled": "half_open", "never": "closed"}
    assert trips.count == 1
    assert health.state("cooled", POLICY) == BreakerState.HALF_OPEN
    assert health.states([]) == {}


def _intent(livemode: bool = True) -> PaymentIntent:
    issuer = MemberBankFactory()
    card = CardFactory(product=CardProductFactory(bank=issuer))
    return PaymentIntent(
        merchant=MerchantFactory(),
        cardholder=card.cardholder,
        card=card,
        amount=5_000,
        currency="CNY",
        method="card",
        issuer_id=issuer.pk,
        livemode=livemode,
    )


@pytest.mark.redis
def test_the_risk_counters_carry_the_breakers_read_in_their_round_trip(
    redis_stores: tuple[RedisCounters, RedisHealth, Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    counters, health, _clock = redis_stores
    health.record("down", "card", False, POLICY)
    intent = _intent()
    channels = [("down", POLICY), ("up", POLICY)]
    routing.load_config(force=True)
    trips = RoundTrips(monkeypatch)
    assessment = risk.assess(intent, breakers=(health, channels))
    assert trips.count == 1
    assert assessment.breakers == {"down": "open", "up": "closed"}
    assert assessment.outcome == "allow"
    merchant_day = next(key for key, _, _ in assessment.counted if key.startswith("merchant:") and ":day:" in key)
    assert merchant_day.endswith(":count")

    # Redis lost its scripts (a restart): the round trip is made again with the script loaded, and counts once.
    counters.client.script_flush()
    again = risk.assess(intent, breakers=(health, channels))
    assert again.breakers == {"down": "open", "up": "closed"}
    assert counters.add([(merchant_day, 0, 60)]) == [2]  # two payments counted, not three

    # Another Redis for the breakers, or none asked for: nothing carried, the routing reads them itself.
    elsewhere = RedisHealth(django_settings.REDIS_URL + "?x=1")
    assert risk.assess(intent, breakers=(elsewhere, channels)).breakers is None
    assert risk.assess(intent, breakers=(health, [])).breakers is None
    assert risk.assess(intent).breakers is None


@pytest.mark.redis
def test_a_confirmed_payment_makes_two_round_trips_to_redis(
    redis_stores: tuple[RedisCounters, RedisHealth, Clock], channel_fake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The risk counters with the breakers routing asks for, then the channel's outcome: two, however many channels
    are candidates (each breaker was a round trip of its own)."""
    issuer = MemberBankFactory()
    card = CardFactory(product=CardProductFactory(bank=issuer))
    merchant = MerchantFactory()
    for code in ("x", "y", "z"):
        ChannelFactory(code=code, acquirer=MemberBankFactory())
    routing.load_config(force=True)
    load_calendar()
    counters, health, _clock = redis_stores
    counters.add([("warm", 1, 60)])  # each store's script known to Redis (another test may have flushed them)
    health.record("warm", "card", True, POLICY)
    trips = RoundTrips(monkeypatch)
    intent = services.payment_create(
        merchant=merchant,
        cardholder=card.cardholder,
        card=card,
        amount=2_000,
        currency="CNY",
        idempotency_key=f"trips-{next(_keys)}",
        confirm=True,
    )
    assert intent.status == PaymentIntent.Status.SUCCEEDED
    assert trips.count == 2
