"""Aggregated routing (多通道聚合): which channels may carry a payment, and in which order to try them.

The configuration (channels, rules, error policies) is loaded into plain dataclasses and cached in the process; a
version number in the shared cache, bumped whenever an operator saves a rule or channel, makes every process reload
within `ROUTING_CONFIG_TTL` seconds — rules edited in the admin take effect without a restart. While the shared cache
is down (Redis unreachable) every process reloads the configuration every `ROUTING_CONFIG_TTL` seconds instead.

A decision is a pure function of the payment's context, that configuration, channel health and a seeded random
generator, and it explains itself: the rule matched, every candidate with its score or the reason it was dropped.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time as dtime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache

from core.cache import shared_cache_down

from .health import BreakerPolicy, BreakerState, HealthStore
from .methods import ACCOUNT_CHANNEL_KIND
from .models import Channel, ChannelErrorPolicy, PaymentIntent, PaymentMethod, RoutingRule

_VERSION_KEY = "payments:routing:version"
SUCCESS_PRIOR = 0.5  # the score of a channel with no history yet, so new channels get traffic
MIN_HISTORY = 5


@dataclass(frozen=True)
class ChannelInfo:
    id: int
    code: str
    remote_id: str
    kind: str
    connector: str
    acquirer_id: int
    acquirer_usable: bool
    methods: frozenset[str]
    currencies: frozenset[str]
    min_amount: int
    max_amount: int
    fee_percent: Decimal
    fee_fixed: int
    enabled: bool
    breaker: BreakerPolicy
    sandbox: bool = False

    def expected_cost(self, amount: int) -> Decimal:
        return self.fee_percent * amount / 100 + self.fee_fixed


@dataclass(frozen=True)
class RuleInfo:
    id: int
    name: str
    strategy: str
    merchant_id: int | None
    mcc: str
    amount_min: int | None
    amount_max: int | None
    currency: str
    method: str
    issuer_id: int | None
    on_us: bool | None
    time_from: dtime | None
    time_to: dtime | None
    epsilon: float
    seed: int | None
    channels: tuple[tuple[int, int], ...]  # (channel id, weight) in position order


@dataclass
class RoutingConfig:
    version: int
    channels: dict[int, ChannelInfo]
    rules: list[RuleInfo]
    retry_policy: dict[tuple[int | None, str], bool]
    channel_models: dict[int, Channel] = field(default_factory=dict)
    # Risk rules and fee schedules change as rarely as channels and follow the same version: one load per process.
    risk_rules: list[Any] = field(default_factory=list)
    fee_schedules: list[Any] = field(default_factory=list)
    # The blocked lists as (kind, value): every save or delete of a block bumps the version (payments/apps.py).
    blocked: frozenset[tuple[str, str]] = frozenset()
    rngs: dict[int | None, random.Random] = field(default_factory=dict)
    rng_lock: threading.Lock = field(default_factory=threading.Lock)

    def retry_allowed(self, channel_id: int, error_code: str) -> bool:
        """Only for attempts known not to have charged. Unlisted codes are retried."""
        if (channel_id, error_code) in self.retry_policy:
            return self.retry_policy[(channel_id, error_code)]
        return self.retry_policy.get((None, error_code), True)

    def rng_for(self, rule: RuleInfo | None) -> random.Random:
        key = rule.id if rule else None
        with self.rng_lock:
            if key not in self.rngs:
                self.rngs[key] = random.Random(rule.seed if rule and rule.seed is not None else None)  # noqa: S311
            return self.rngs[key]


@dataclass(frozen=True)
class RouteContext:
    merchant_id: int
    mcc: str
    amount: int
    currency: str
    method: str
    issuer_id: int | None
    local_time: dtime
    account_kind: str = ""  # a balance payment: the kind of channel that keeps the account (at the issuer)
    livemode: bool = True  # a test-mode payment goes to sandbox channels only


@dataclass
class Candidate:
    channel: str
    score: float | None = None
    dropped: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"channel": self.channel, "score": self.score, "dropped": self.dropped}


@dataclass
class Decision:
    rule_id: int | None
    rule_name: str
    strategy: str
    candidates: list[Candidate]
    order: list[ChannelInfo]
    explored: bool = False
    decided_in_us: int = 0
    # The breaker state each channel was seen in (read once per decision: the caller need not ask again).
    breakers: dict[str, BreakerState] = field(default_factory=dict)

    @property
    def chosen_codes(self) -> list[str]:
        return [channel.code for channel in self.order]


# --- configuration --------------------------------------------------------------------------------------------------

_config: RoutingConfig | None = None
_config_checked = 0.0
_config_lock = threading.Lock()


def config_changed() -> None:
    """Called by every service that edits channels, rules or error policies (and on every blocked-list change).
    Other processes reload within ROUTING_CONFIG_TTL; this one checks the version again on its next decision."""
    global _config_checked
    _config_checked = float("-inf")
    try:
        cache.incr(_VERSION_KEY)
    except ValueError:
        cache.set(_VERSION_KEY, time.time_ns(), None)


def _current_version() -> int:
    version = cache.get(_VERSION_KEY)
    if version is None:
        # A fresh (or flushed) cache starts a new series, so no process keeps a configuration from before.
        cache.add(_VERSION_KEY, time.time_ns(), None)
        version = cache.get(_VERSION_KEY, 0)
    if shared_cache_down():
        # The version read is this process's own and would never show another's change: a new one reloads.
        return -time.monotonic_ns()
    return int(version)


def load_config(*, force: bool = False) -> RoutingConfig:
    global _config, _config_checked
    now = time.monotonic()
    ttl = float(getattr(settings, "ROUTING_CONFIG_TTL", 1.0))
    if not force and _config is not None and now - _config_checked < ttl:
        return _config
    with _config_lock:
        version = _current_version()
        _config_checked = now
        if force or _config is None or _config.version != version:
            _config = _build_config(version)
        return _config


def _build_config(version: int) -> RoutingConfig:
    channels = {}
    models = {}
    for channel in Channel.objects.select_related("acquirer"):
        models[channel.pk] = channel
        channels[channel.pk] = ChannelInfo(
            id=channel.pk,
            code=channel.code,
            remote_id=channel.remote_id or channel.code,
            kind=channel.kind,
            connector=channel.connector,
            acquirer_id=channel.acquirer_id,
            acquirer_usable=channel.acquirer.acquiring_licence and channel.acquirer.status == "active",
            methods=frozenset(channel.methods or []),
            currencies=frozenset(channel.currencies or []),
            min_amount=channel.min_amount,
            max_amount=channel.max_amount,
            fee_percent=channel.fee_percent,
            fee_fixed=channel.fee_fixed,
            enabled=channel.enabled,
            sandbox=channel.sandbox,
            breaker=BreakerPolicy(
                consecutive_failures=channel.breaker_consecutive_failures,
                failure_rate=float(channel.breaker_failure_rate),
                window=channel.breaker_window,
                cooldown_seconds=float(channel.breaker_cooldown_seconds),
            ),
        )
    rules = []
    for rule in RoutingRule.objects.filter(enabled=True).prefetch_related("rule_channels").order_by("priority", "id"):
        links = sorted(rule.rule_channels.all(), key=lambda link: (link.position, link.pk))
        rules.append(
            RuleInfo(
                id=rule.pk,
                name=rule.name,
                strategy=rule.strategy,
                merchant_id=rule.merchant_id,
                mcc=rule.merchant_category_code,
                amount_min=rule.amount_min,
                amount_max=rule.amount_max,
                currency=rule.currency,
                method=rule.method,
                issuer_id=rule.issuer_id,
                on_us=rule.on_us,
                time_from=rule.time_from,
                time_to=rule.time_to,
                epsilon=float(rule.epsilon),
                seed=rule.seed,
                channels=tuple((link.channel_id, link.weight) for link in links),
            )
        )
    policy = {(p.channel_id, p.error_code): p.retry for p in ChannelErrorPolicy.objects.all()}
    from .models import FeeSchedule, RiskBlock, RiskRule

    return RoutingConfig(
        version=version,
        channels=channels,
        rules=rules,
        retry_policy=policy,
        channel_models=models,
        risk_rules=list(RiskRule.objects.filter(enabled=True)),
        fee_schedules=list(FeeSchedule.objects.all()),
        blocked=frozenset(RiskBlock.objects.values_list("kind", "value")),
    )


# --- decision -------------------------------------------------------------------------------------------------------


def _in_window(moment: dtime, start: dtime | None, end: dtime | None) -> bool:
    if start is None and end is None:
        return True
    start, end = start or dtime.min, end or dtime.max
    return start <= moment < end if start <= end else (moment >= start or moment < end)  # windows may cross midnight


def rule_matches(rule: RuleInfo, ctx: RouteContext, config: RoutingConfig) -> bool:
    if rule.merchant_id is not None and rule.merchant_id != ctx.merchant_id:
        return False
    if rule.mcc and rule.mcc != ctx.mcc:
        return False
    if rule.amount_min is not None and ctx.amount < rule.amount_min:
        return False
    if rule.amount_max is not None and ctx.amount > rule.amount_max:
        return False
    if rule.currency and rule.currency != ctx.currency:
        return False
    if rule.method and rule.method != ctx.method:
        return False
    if rule.issuer_id is not None and rule.issuer_id != ctx.issuer_id:
        return False
    if rule.on_us is not None:
        pool = [config.channels[cid] for cid, _ in rule.channels if cid in config.channels] or config.channels.values()
        if not any((channel.acquirer_id == ctx.issuer_id) == rule.on_us for channel in pool):
            return False
    return _in_window(ctx.local_time, rule.time_from, rule.time_to)


def why_not(channel: ChannelInfo, ctx: RouteContext) -> str:
    """The first reason a channel cannot carry this payment, or "" when it can."""
    if not channel.enabled:
        return "disabled"
    if channel.sandbox and ctx.livemode:
        return "a sandbox: test-mode payments only"
    if not ctx.livemode and not channel.sandbox:
        return "live: a test-mode payment goes to a sandbox"
    if not channel.acquirer_usable:
        return "acquirer without an active acquiring licence"
    if ctx.method not in channel.methods:
        return f"method {ctx.method} not supported"
    if ctx.currency not in channel.currencies:
        return f"currency {ctx.currency} not supported"
    if not channel.min_amount <= ctx.amount <= channel.max_amount:
        return "amount outside the channel's limits"
    if ctx.account_kind:
        if channel.kind != ctx.account_kind or channel.acquirer_id != ctx.issuer_id:
            return "does not keep the payer's account"
    elif channel.kind == Channel.Kind.BANK_DEBIT and channel.acquirer_id != ctx.issuer_id:
        return "bank debit serves its own bank's cards only"
    return ""


@dataclass(frozen=True)
class Screened:
    """A payment's routing before any breaker is asked: the rule that applies, its pool of channels with their
    weights, and why each is out of the running ('' for none). Pure, from the loaded configuration."""

    rule: RuleInfo | None
    pool: list[tuple[ChannelInfo, int]]
    reasons: list[str]

    def breakers_to_read(self) -> list[tuple[str, BreakerPolicy]]:
        """The channels still in the running, whose breakers `decide` asks for: a caller may read them beforehand, in
        a round trip it makes anyway (`risk.assess`)."""
        return [(c.code, c.breaker) for (c, _), reason in zip(self.pool, self.reasons, strict=True) if not reason]


def screen(ctx: RouteContext, config: RoutingConfig) -> Screened:
    # Routing rules are the live traffic's economics: a test-mode payment goes to the cheapest sandbox able to carry it.
    rule = next((r for r in config.rules if rule_matches(r, ctx, config)), None) if ctx.livemode else None
    if rule and rule.channels:
        pool = [(config.channels[cid], weight) for cid, weight in rule.channels if cid in config.channels]
    else:
        pool = [(channel, 0) for channel in config.channels.values()]
    reasons = []
    for channel, _weight in pool:
        reason = why_not(channel, ctx)
        if not reason and rule and rule.on_us is not None and (channel.acquirer_id == ctx.issuer_id) != rule.on_us:
            reason = "not on-us" if rule.on_us else "on-us excluded by the rule"
        reasons.append(reason)
    return Screened(rule, pool, reasons)


def decide(
    ctx: RouteContext,
    config: RoutingConfig,
    health: HealthStore,
    *,
    screened: Screened | None = None,
    breakers: Mapping[str, BreakerState] | None = None,
) -> Decision:
    """The channels to try, in order. `screened`: `screen(ctx, config)`, when the caller has it already. The breakers
    of the channels still in the running are read in one round trip, unless `breakers` already holds them (read by
    the caller for this payment: `Screened.breakers_to_read`)."""
    started = time.perf_counter_ns()
    screened = screened or screen(ctx, config)
    rule, pool, reasons = screened.rule, screened.pool, screened.reasons
    strategy = rule.strategy if rule else RoutingRule.Strategy.CHEAPEST
    known = dict(breakers or {})
    missing = [(code, policy) for code, policy in screened.breakers_to_read() if code not in known]
    if missing:
        known.update(health.states(missing))
    candidates: list[Candidate] = []
    usable: list[tuple[ChannelInfo, int]] = []
    read: dict[str, BreakerState] = {}
    for (channel, weight), reason in zip(pool, reasons, strict=True):
        if not reason:
            breaker = read[channel.code] = known[channel.code]
            if breaker == BreakerState.OPEN:
                reason = "circuit open"
        candidates.append(Candidate(channel.code, dropped=reason))
        if not reason:
            usable.append((channel, weight))
    order, scores, explored = _order(strategy, usable, ctx, health, config.rng_for(rule), rule)
    for candidate in candidates:
        if candidate.channel in scores:
            candidate.score = scores[candidate.channel]
    return Decision(
        rule_id=rule.id if rule else None,
        rule_name=rule.name if rule else "",
        strategy=strategy,
        candidates=candidates,
        order=order,
        explored=explored,
        decided_in_us=(time.perf_counter_ns() - started) // 1000,
        breakers=read,
    )


def _order(
    strategy: str,
    usable: list[tuple[ChannelInfo, int]],
    ctx: RouteContext,
    health: HealthStore,
    rng: random.Random,
    rule: RuleInfo | None,
) -> tuple[list[ChannelInfo], dict[str, float], bool]:
    if not usable:
        return [], {}, False
    if strategy == RoutingRule.Strategy.FIXED:
        scores = {channel.code: float(position) for position, (channel, _) in enumerate(usable, start=1)}
        return [channel for channel, _ in usable], scores, False
    if strategy == RoutingRule.Strategy.WEIGHTED:
        total = sum(weight for _, weight in usable)
        scores = {channel.code: float(weight) for channel, weight in usable}
        if total <= 0:
            return [channel for channel, _ in usable], scores, False
        pick = rng.uniform(0, total)
        running = 0
        first = usable[-1][0]
        for channel, weight in usable:
            running += weight
            if pick <= running and weight > 0:
                first = channel
                break
        rest = sorted((c for c, _ in usable if c.code != first.code), key=lambda c: -scores[c.code])
        return [first, *rest], scores, False
    if strategy == RoutingRule.Strategy.SUCCESS_RATE:
        scores = {}
        for channel, _ in usable:
            rate, seen = health.success_rate(channel.code, ctx.method)
            scores[channel.code] = round(rate if seen >= MIN_HISTORY else SUCCESS_PRIOR, 4)
        ranked = sorted((c for c, _ in usable), key=lambda c: (-scores[c.code], c.expected_cost(ctx.amount), c.code))
        explored = False
        epsilon = rule.epsilon if rule else 0.0
        if epsilon > 0 and len(ranked) > 1 and rng.random() < epsilon:
            choice = rng.choice(ranked[1:])
            ranked = [choice, *(c for c in ranked if c.code != choice.code)]
            explored = True
        return ranked, scores, explored
    costs = {channel.code: float(channel.expected_cost(ctx.amount)) for channel, _ in usable}
    ranked = sorted((c for c, _ in usable), key=lambda c: (costs[c.code], c.code))
    return ranked, costs, False


def context_for(intent: PaymentIntent, local_time: dtime) -> RouteContext:
    return RouteContext(
        merchant_id=intent.merchant_id,
        mcc=intent.merchant.category_code,
        amount=intent.amount,
        currency=intent.currency,
        # Money from an account (a wallet, a bank balance) goes to the channel that keeps it, whatever the cardholder
        # authorised it with (a payment code, an agreement): channels list "balance" for that.
        method=PaymentMethod.BALANCE if intent.linked_account_id else intent.method,
        issuer_id=intent.issuer_id,
        local_time=local_time,
        account_kind=ACCOUNT_CHANNEL_KIND.get(intent.linked_account.kind, "") if intent.linked_account else "",
        livemode=intent.livemode,
    )
