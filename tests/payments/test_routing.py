"""Routing: rules and strategies on crafted conditions, deterministic exploration, breakers, fallback, explanations."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from payments import routing, services
from payments.health import BreakerPolicy, BreakerState, InProcessHealth
from payments.models import ChannelErrorPolicy, PaymentIntent, RoutingDecision, RoutingRule, RuleChannel
from tests.factories import (
    PASSWORD,
    AllianceOperatorFactory,
    CardFactory,
    CardProductFactory,
    ChannelFactory,
    MemberBankFactory,
    MerchantFactory,
    route_context,
)

pytestmark = pytest.mark.django_db
_keys = itertools.count()
NOON = dt.time(12, 0)


@pytest.fixture
def banks() -> dict[str, Any]:
    return {"issuer": MemberBankFactory(), "acq1": MemberBankFactory(), "acq2": MemberBankFactory()}


def ctx(**overrides: Any) -> routing.RouteContext:
    return route_context(**overrides)  # type: ignore[no-any-return]


def decide(context: routing.RouteContext, health: Any = None) -> routing.Decision:
    return routing.decide(context, routing.load_config(force=True), health or InProcessHealth())


def test_cheapest_weighs_percent_and_fixed_fees_by_amount(banks: dict[str, Any]) -> None:
    ChannelFactory(code="pct-high", acquirer=banks["acq1"], fee_percent="0.60", fee_fixed=0)
    ChannelFactory(code="fixed-fee", acquirer=banks["acq2"], fee_percent="0.20", fee_fixed=30)
    # 100.00 CNY: 60 vs 20+30=50 → fixed-fee; 10.00 CNY: 6 vs 2+30=32 → pct-high.
    assert decide(ctx(amount=10_000)).chosen_codes == ["fixed-fee", "pct-high"]
    assert decide(ctx(amount=1_000)).chosen_codes == ["pct-high", "fixed-fee"]
    scores = {c.channel: c.score for c in decide(ctx(amount=10_000)).candidates}
    assert scores == {"pct-high": 60.0, "fixed-fee": 50.0}


def test_test_mode_payments_go_to_sandboxes_only_and_live_ones_never(banks: dict[str, Any]) -> None:
    live = ChannelFactory(code="live-cheap", acquirer=banks["acq1"], fee_percent="0.10")
    ChannelFactory(code="sandbox-a", acquirer=banks["acq1"], fee_percent="0.50", sandbox=True)
    ChannelFactory(code="sandbox-b", acquirer=banks["acq2"], fee_percent="0.30", sandbox=True)
    rule = RoutingRule.objects.create(name="live only", strategy="fixed", priority=1)
    RuleChannel.objects.create(rule=rule, channel=live, position=1)
    live_decision = decide(ctx())
    assert (live_decision.rule_name, live_decision.chosen_codes) == ("live only", ["live-cheap"])
    test_decision = decide(ctx(livemode=False))
    assert test_decision.rule_name == ""  # routing rules are for live traffic
    assert test_decision.chosen_codes == ["sandbox-b", "sandbox-a"]  # the cheapest sandbox first
    dropped = {candidate.channel: candidate.dropped for candidate in test_decision.candidates}
    assert dropped["live-cheap"] == "live: a test-mode payment goes to a sandbox"
    RoutingRule.objects.all().delete()
    unruled = {c.channel: c.dropped for c in decide(ctx()).candidates}
    assert unruled == {
        "live-cheap": "",
        "sandbox-a": "a sandbox: test-mode payments only",
        "sandbox-b": "a sandbox: test-mode payments only",
    }


def test_fixed_rule_follows_its_list_and_drops_incapable_channels_with_reasons(banks: dict[str, Any]) -> None:
    a = ChannelFactory(code="a", acquirer=banks["acq1"])
    b = ChannelFactory(code="b", acquirer=banks["acq2"], currencies=["CNY"])
    c = ChannelFactory(code="c", acquirer=banks["acq2"], enabled=False)
    d = ChannelFactory(code="d", acquirer=MemberBankFactory(acquiring_licence=False))
    rule = RoutingRule.objects.create(name="fixed", strategy="fixed", priority=1)
    for position, channel in enumerate([b, a, c, d], start=1):
        RuleChannel.objects.create(rule=rule, channel=channel, position=position)
    decision = decide(ctx(currency="HKD"))
    assert decision.rule_name == "fixed"
    assert decision.chosen_codes == ["a"]
    dropped = {candidate.channel: candidate.dropped for candidate in decision.candidates}
    assert dropped == {
        "b": "currency HKD not supported",
        "a": "",
        "c": "disabled",
        "d": "acquirer without an active acquiring licence",
    }
    assert decide(ctx(currency="CNY")).chosen_codes == ["b", "a"]


@pytest.mark.parametrize(
    ("field", "value", "matching", "other"),
    [
        ("merchant_id", 7, {"merchant_id": 7}, {"merchant_id": 8}),
        ("merchant_category_code", "5812", {"mcc": "5812"}, {"mcc": "5411"}),
        ("amount_min", 5_000, {"amount": 5_000}, {"amount": 4_999}),
        ("amount_max", 5_000, {"amount": 5_000}, {"amount": 5_001}),
        ("currency", "USD", {"currency": "USD"}, {"currency": "CNY"}),
        ("method", "balance", {"method": "balance"}, {"method": "card"}),
    ],
)
def test_rule_conditions(
    banks: dict[str, Any], field: str, value: Any, matching: dict[str, Any], other: dict[str, Any]
) -> None:
    ChannelFactory(code="any", acquirer=banks["acq1"])
    if field == "merchant_id":
        value = MerchantFactory().pk
        matching, other = {"merchant_id": value}, {"merchant_id": value + 1}
    RoutingRule.objects.create(name="conditional", strategy="fixed", **{field: value})
    assert decide(ctx(**matching)).rule_name == "conditional"
    assert decide(ctx(**other)).rule_name == ""


def test_issuer_on_us_and_time_window_conditions(banks: dict[str, Any]) -> None:
    own = ChannelFactory(code="own-bank", acquirer=banks["issuer"], fee_percent="0.9")
    ChannelFactory(code="other-bank", acquirer=banks["acq1"], fee_percent="0.1")
    RoutingRule.objects.create(
        name="on-us at night",
        strategy="cheapest",
        on_us=True,
        time_from=dt.time(22),
        time_to=dt.time(6),
        issuer=banks["issuer"],
    )
    night = decide(ctx(issuer_id=banks["issuer"].pk, local_time=dt.time(23, 30)))
    assert night.rule_name == "on-us at night"
    assert night.chosen_codes == [own.code]
    assert {c.channel: c.dropped for c in night.candidates}["other-bank"] == "not on-us"
    assert decide(ctx(issuer_id=banks["issuer"].pk, local_time=dt.time(5, 59))).rule_name == "on-us at night"
    assert decide(ctx(issuer_id=banks["issuer"].pk, local_time=NOON)).rule_name == ""
    assert decide(ctx(issuer_id=banks["acq2"].pk, local_time=dt.time(23))).rule_name == ""


def test_bank_debit_channel_serves_only_its_own_cards(banks: dict[str, Any]) -> None:
    ChannelFactory(code="debit-own", kind="bank_debit", acquirer=banks["issuer"])
    assert decide(ctx(issuer_id=banks["issuer"].pk)).chosen_codes == ["debit-own"]
    decision = decide(ctx(issuer_id=banks["acq1"].pk))
    assert decision.chosen_codes == []
    assert decision.candidates[0].dropped == "bank debit serves its own bank's cards only"


def test_success_rate_prefers_the_healthier_channel(banks: dict[str, Any]) -> None:
    ChannelFactory(code="steady", acquirer=banks["acq1"], fee_percent="0.9")
    ChannelFactory(code="flaky", acquirer=banks["acq2"], fee_percent="0.1")
    RoutingRule.objects.create(name="best", strategy="success_rate")
    health = InProcessHealth()
    policy = BreakerPolicy(consecutive_failures=100, failure_rate=1.0)
    for index in range(10):
        health.record("steady", "card", True, policy)
        health.record("flaky", "card", index % 2 == 0, policy)
    decision = decide(ctx(), health)
    assert decision.chosen_codes == ["steady", "flaky"]
    assert {c.channel: c.score for c in decision.candidates} == {"steady": 1.0, "flaky": 0.5}
    # Without history both score the prior, and the cheaper one leads.
    assert decide(ctx()).chosen_codes == ["flaky", "steady"]


def test_exploration_is_deterministic_under_a_seed(banks: dict[str, Any]) -> None:
    ChannelFactory(code="x1", acquirer=banks["acq1"])
    ChannelFactory(code="x2", acquirer=banks["acq2"])
    ChannelFactory(code="x3", acquirer=banks["acq2"])
    RoutingRule.objects.create(name="explore", strategy="success_rate", epsilon="0.300", seed=42)

    def run() -> list[tuple[bool, str]]:
        config = routing.load_config(force=True)
        health = InProcessHealth()
        return [(d.explored, d.chosen_codes[0]) for d in (routing.decide(ctx(), config, health) for _ in range(200))]

    first, second = run(), run()
    assert first == second
    explored = sum(1 for flag, _ in first if flag)
    assert 40 <= explored <= 80  # ε = 0.3 of 200
    assert {code for flag, code in first if flag} <= {"x2", "x3"}


def test_weighted_split_follows_the_weights_reproducibly(banks: dict[str, Any]) -> None:
    heavy = ChannelFactory(code="heavy", acquirer=banks["acq1"])
    light = ChannelFactory(code="light", acquirer=banks["acq2"])
    rule = RoutingRule.objects.create(name="split", strategy="weighted", seed=7)
    RuleChannel.objects.create(rule=rule, channel=heavy, position=1, weight=70)
    RuleChannel.objects.create(rule=rule, channel=light, position=2, weight=30)

    def run() -> int:
        config = routing.load_config(force=True)
        return sum(
            1 for _ in range(1000) if routing.decide(ctx(), config, InProcessHealth()).chosen_codes[0] == "heavy"
        )

    heavy_count = run()
    assert heavy_count == run()
    assert 650 <= heavy_count <= 750


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_on_consecutive_failures_and_recovers_through_one_probe() -> None:
    clock = FakeClock()
    health = InProcessHealth(clock=clock)
    policy = BreakerPolicy(consecutive_failures=3, failure_rate=1.0, window=20, cooldown_seconds=30)
    assert health.record("c", "card", False, policy) == BreakerState.CLOSED
    assert health.record("c", "card", False, policy) == BreakerState.CLOSED
    assert health.record("c", "card", False, policy) == BreakerState.OPEN
    assert health.allow("c", policy) is False
    clock.now += 29
    assert health.state("c", policy) == BreakerState.OPEN
    clock.now += 1
    assert health.state("c", policy) == BreakerState.HALF_OPEN
    assert health.allow("c", policy) is True  # the probe
    assert health.allow("c", policy) is False  # only one
    assert health.record("c", "card", False, policy) == BreakerState.OPEN  # the probe failed
    clock.now += 30
    assert health.allow("c", policy) is True
    assert health.record("c", "card", True, policy) == BreakerState.CLOSED
    assert health.allow("c", policy) is True


def test_breaker_opens_on_failure_rate_over_the_window() -> None:
    health = InProcessHealth(clock=FakeClock())
    policy = BreakerPolicy(consecutive_failures=100, failure_rate=0.5, window=10, cooldown_seconds=30)
    states = [health.record("r", "card", ok, policy) for ok in [True, False] * 3]
    assert states[-1] == BreakerState.CLOSED  # 3 of 6: not over 50%
    assert health.record("r", "card", False, policy) == BreakerState.OPEN  # 4 of 7


@pytest.mark.redis
def test_redis_breaker_is_shared_between_processes() -> None:
    from django.conf import settings

    from payments.health import RedisHealth

    clock = FakeClock()
    one, two = RedisHealth(settings.REDIS_URL, clock=clock), RedisHealth(settings.REDIS_URL, clock=clock)
    one.prefix = two.prefix = f"test:{next(_keys)}:{id(clock)}"
    policy = BreakerPolicy(consecutive_failures=2, failure_rate=1.0, window=10, cooldown_seconds=5)
    one.record("shared", "card", False, policy)
    assert two.record("shared", "card", False, policy) == BreakerState.OPEN
    assert one.state("shared", policy) == BreakerState.OPEN
    assert one.allow("shared", policy) is False
    clock.now += 5
    assert two.allow("shared", policy) is True
    assert one.allow("shared", policy) is False  # the other process took the probe
    assert one.record("shared", "card", True, policy) == BreakerState.CLOSED
    assert two.state("shared", policy) == BreakerState.CLOSED
    assert one.success_rate("shared", "card") == (1 / 3, 3)
    one.reset()


# --- through the payment flow -----------------------------------------------------------------------------------


@pytest.fixture
def shop(channel_fake: Any, banks: dict[str, Any]) -> dict[str, Any]:
    card = CardFactory(product=CardProductFactory(bank=banks["issuer"]))
    merchant = MerchantFactory(sponsor_bank=banks["acq1"])
    first = ChannelFactory(code="first", acquirer=banks["acq1"], fee_percent="0.1", breaker_consecutive_failures=2)
    second = ChannelFactory(code="second", acquirer=banks["acq2"], fee_percent="0.5")
    return {"card": card, "merchant": merchant, "fake": channel_fake, "first": first, "second": second}


def pay(shop: dict[str, Any], amount: int = 1_000) -> PaymentIntent:
    return services.payment_create(
        merchant=shop["merchant"],
        cardholder=shop["card"].cardholder,
        card=shop["card"],
        amount=amount,
        currency="CNY",
        idempotency_key=f"k{next(_keys)}",
        confirm=True,
    )


def test_every_decision_is_recorded_with_its_explanation(shop: dict[str, Any]) -> None:
    intent = pay(shop)
    decision = RoutingDecision.objects.get(intent=intent)
    assert decision.intent_created_at == intent.created_at  # the intent's month
    assert decision.strategy == "cheapest"
    assert decision.chosen == ["first", "second"]
    assert {c["channel"] for c in decision.candidates} == {"first", "second"}
    client = Client()
    client.login(username=AllianceOperatorFactory().username, password=PASSWORD)
    page = client.get(reverse("admin:payments_paymentintent_change", args=[intent.pk])).content.decode()
    assert "first: score" in page
    assert "cheapest" in page


def test_open_breaker_routes_around_the_channel_and_says_why(shop: dict[str, Any], fresh_health: Any) -> None:
    shop["fake"].down_channels.add("first")
    for _ in range(2):
        assert pay(shop).channel.code == "second"  # fallback after a known non-charge
    intent = pay(shop)
    assert intent.attempts.count() == 1  # the breaker is open: "first" is not tried at all
    decision = RoutingDecision.objects.filter(intent=intent).get()
    assert {c["channel"]: c["dropped"] for c in decision.candidates}["first"] == "circuit open"


def test_fallback_is_refused_while_an_attempt_is_ambiguous(shop: dict[str, Any]) -> None:
    shop["fake"].inquiry_down = True
    shop["fake"].reversal_down = True
    intent = pay(shop, amount=1_054)  # timed out before charging, but nobody can tell yet
    assert intent.status == "processing"
    assert list(intent.attempts.values_list("channel__code", "status")) == [("first", "unknown")]
    shop["fake"].inquiry_down = shop["fake"].reversal_down = False
    report = services.attempts_resolve(older_than=dt.timedelta(0))
    intent.refresh_from_db()
    assert (report.not_charged, intent.status) == (1, "failed")
    assert shop["fake"].charge_count() == 0


def test_error_policy_can_forbid_the_retry(shop: dict[str, Any]) -> None:
    shop["fake"].down_channels.add("first")
    ChannelErrorPolicy.objects.create(channel=shop["first"], error_code="channel_unavailable", retry=False)
    services.routing_config_changed()
    intent = pay(shop)
    assert (intent.status, intent.attempts.count()) == ("failed", 1)


def test_rules_edited_in_the_admin_take_effect_without_a_restart(shop: dict[str, Any]) -> None:
    assert pay(shop).channel.code == "first"
    client = Client()
    client.login(username=AllianceOperatorFactory().username, password=PASSWORD)
    response = client.post(
        reverse("admin:payments_routingrule_add"),
        {
            "name": "prefer second",
            "priority": "1",
            "enabled": "on",
            "strategy": "fixed",
            "epsilon": "0",
            "merchant_category_code": "",
            "currency": "",
            "method": "",
            "rule_channels-TOTAL_FORMS": "1",
            "rule_channels-INITIAL_FORMS": "0",
            "rule_channels-0-channel": str(shop["second"].pk),
            "rule_channels-0-position": "1",
            "rule_channels-0-weight": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert pay(shop).channel.code == "second"


def test_probe_closes_a_half_open_breaker(shop: dict[str, Any]) -> None:
    clock = FakeClock()
    store = InProcessHealth(clock=clock)
    from payments.health import set_health_store

    set_health_store(store)
    policy = routing.load_config(force=True).channels[shop["first"].pk].breaker
    for _ in range(2):
        store.record("first", "card", False, policy)
    assert services.channels_probe()["first"] == "open"
    clock.now += policy.cooldown_seconds
    assert services.channels_probe()["first"] == "closed"


def test_channel_figures_from_recorded_attempts(shop: dict[str, Any]) -> None:
    from payments.selectors import channel_figures

    pay(shop)
    pay(shop, amount=1_051)  # declined: the channel worked, the card did not
    shop["fake"].down_channels.add("first")
    pay(shop)
    figures = {f.code: f for f in channel_figures()}
    assert (
        figures["first"].volume,
        figures["first"].approved,
        figures["first"].declined,
        figures["first"].channel_faults,
    ) == (3, 1, 1, 1)
    assert figures["second"].volume == 1
    assert figures["first"].latency_p50_ms is not None
