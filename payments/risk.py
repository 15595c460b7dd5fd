"""Risk checks before routing: blocked lists, amount limits, daily caps and velocity, from fast counters.

Counters are fixed windows (the current minute, hour, local day) per card, cardholder and merchant, holding a count and
an amount. A payment is added to its counters first and checked against the new values, so two racing payments never
both slip under a cap; a blocked payment takes itself back out. Payments that pass count even if a channel later
declines them: velocity is about attempts. With `REDIS_URL` the counters live in Redis (one Lua script adds to all of a
payment's counters, keys expire after their window); otherwise in the process (tests, a single process). While Redis
cannot be reached the Redis store counts in the process instead (`core.redis_fallback`: a warning at most once a
minute, Redis again as soon as it answers), so payments go on with each process enforcing the limits on what it saw.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from django.conf import settings

from core.calendar import local_now
from core.redis_fallback import RedisFallback, redis_client

from .health import BreakerPolicy, BreakerState, HealthStore, RedisHealth
from .models import PaymentIntent, RiskBlock, RiskOutcome, RiskRule

T = TypeVar("T")

logger = logging.getLogger(__name__)
WINDOW_SECONDS: dict[str, int] = {RiskRule.Window.MINUTE: 60, RiskRule.Window.HOUR: 3600, RiskRule.Window.DAY: 86400}
_SUBJECTS, _WINDOWS = tuple(RiskRule.Subject.values), tuple(RiskRule.Window.values)  # (an enum's .values is a new list)


class CounterStore(Protocol):
    def add(self, increments: list[tuple[str, int, int]]) -> list[int]:
        """Adds each (key, amount, ttl seconds) and returns the new values, in order."""
        ...

    def reset(self) -> None: ...


class InProcessCounters:
    def __init__(self, clock: Any = time.time) -> None:
        self._values: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()
        self.clock = clock

    def add(self, increments: list[tuple[str, int, int]]) -> list[int]:
        now = self.clock()
        results = []
        with self._lock:
            for key, amount, ttl in increments:
                value, expires = self._values.get(key, (0, now + ttl))
                if expires <= now:
                    value, expires = 0, now + ttl
                self._values[key] = (value + amount, expires)
                results.append(value + amount)
            if len(self._values) > 100_000:
                self._values = {k: v for k, v in self._values.items() if v[1] > now}
        return results

    def reset(self) -> None:
        with self._lock:
            self._values.clear()


# Every counter of a payment in one command: INCRBY each key, and give a new key its window (EXPIRE NX keeps the
# window of an existing one). Atomic per call, so racing increments each see their own total.
_INCREMENT_SCRIPT = """
local totals = {}
for i = 1, #KEYS do
    totals[i] = redis.call('INCRBY', KEYS[i], ARGV[2 * i - 1])
    redis.call('EXPIRE', KEYS[i], ARGV[2 * i], 'NX')
end
return totals
"""


_IN_PROCESS = RedisFallback("risk_counters", "in-process velocity counters (each process counts its own payments)")


class RedisCounters:
    """The counters in Redis; while Redis cannot be reached, in `local` (this process's own, `_IN_PROCESS`)."""

    prefix = "mengka:risk"

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = redis_client(url)
        self._increment = self.client.register_script(_INCREMENT_SCRIPT)
        self.local = InProcessCounters()

    def add(self, increments: list[tuple[str, int, int]]) -> list[int]:
        """One round trip and one command for all of them (a pipeline of INCRBY + EXPIRE pairs packs twice as many
        commands in Python: ~0.2 ms a payment)."""
        return _IN_PROCESS.call(self.url, lambda: self._add(increments), lambda: self.local.add(increments))

    def _add(self, increments: list[tuple[str, int, int]]) -> list[int]:
        keys, args = self._script_input(increments)
        return [int(total) for total in self._increment(keys=keys, args=args)]

    def add_along(
        self, increments: list[tuple[str, int, int]], queue: Callable[[Any], Callable[[list[Any]], T]]
    ) -> tuple[list[int], T | None]:
        """`add`, and in the same round trip the reads `queue` puts on the pipeline it is given (of this store's
        Redis); returns the totals and what `queue`'s parser makes of its replies — None when Redis could not be
        reached (the totals are then the in-process ones). The reads may run twice: if Redis has lost the script (a
        restart), nothing ran, and the round trip is made again with the script loaded."""
        return _IN_PROCESS.call(
            self.url, lambda: self._add_along(increments, queue), lambda: (self.local.add(increments), None)
        )

    def _add_along(
        self, increments: list[tuple[str, int, int]], queue: Callable[[Any], Callable[[list[Any]], T]]
    ) -> tuple[list[int], T]:
        from redis.exceptions import NoScriptError

        keys, args = self._script_input(increments)
        for attempt in range(2):
            pipeline = self.client.pipeline(transaction=False)
            pipeline.evalsha(self._increment.sha, len(keys), *keys, *map(str, args))
            parse = queue(pipeline)
            try:
                totals, *replies = pipeline.execute()
            except NoScriptError:
                if attempt:
                    raise
                self.client.script_load(_INCREMENT_SCRIPT)
                continue
            return [int(total) for total in totals], parse(replies)
        raise AssertionError("unreachable")

    def _script_input(self, increments: list[tuple[str, int, int]]) -> tuple[list[str], list[int]]:
        keys = [f"{self.prefix}:{key}" for key, _amount, _ttl in increments]
        return keys, [value for _key, amount, ttl in increments for value in (amount, ttl)]

    def reset(self) -> None:
        self.local.reset()
        for key in self.client.scan_iter(f"{self.prefix}:*"):
            self.client.delete(key)


_store: CounterStore | None = None


def counter_store() -> CounterStore:
    global _store
    if _store is None:
        _store = RedisCounters(settings.REDIS_URL) if settings.REDIS_URL else InProcessCounters()
    return _store


def set_counter_store(store: CounterStore | None) -> None:
    """For tests: swap the store (None: rebuild from settings on next use)."""
    global _store
    _store = store


@dataclass
class Assessment:
    outcome: str = RiskOutcome.ALLOW
    reasons: list[dict[str, Any]] = field(default_factory=list)
    counted: list[tuple[str, int, int]] = field(default_factory=list)  # the increments the payment made, to take back
    breakers: dict[str, BreakerState] | None = None  # read with the counters when asked to (`assess`)

    def flag(self, action: str, code: str, message: str, rule: RiskRule | None = None) -> None:
        self.reasons.append({"code": code, "message": message, "action": action, "rule": rule.pk if rule else None})
        if action == RiskOutcome.BLOCK:
            self.outcome = RiskOutcome.BLOCK
        elif self.outcome == RiskOutcome.ALLOW:
            self.outcome = RiskOutcome.REVIEW

    @property
    def message(self) -> str:
        return "; ".join(reason["message"] for reason in self.reasons)


def _subject_id(intent: PaymentIntent, subject: str) -> int | None:
    if subject == RiskRule.Subject.CARD:
        return intent.card_id
    if subject == RiskRule.Subject.CARDHOLDER:
        return intent.cardholder_id
    return intent.merchant_id


def _bucket(window: str, now: float) -> str:
    if window == RiskRule.Window.DAY:
        return local_now().strftime("%Y%m%d")  # the local calendar day, so a daily cap resets at local midnight
    return str(int(now // WINDOW_SECONDS[window]))


def _counter_keys(intent: PaymentIntent, now: float) -> list[tuple[str, str, str, str]]:
    """(key, subject, window, measure) for every counter this payment moves. Test-mode payments count apart: a
    merchant's sandbox traffic never uses up a real cardholder's, card's or merchant's live limits (and still meets the
    same rules, so declines by velocity can be tried in test mode)."""
    keys = []
    mode = "" if intent.livemode else "test:"
    for subject in _SUBJECTS:
        subject_id = _subject_id(intent, subject)
        if subject_id is None:
            continue
        for window in _WINDOWS:
            base = f"{mode}{subject}:{subject_id}:{window}:{_bucket(window, now)}:{intent.currency}"
            keys.append((f"{base}:count", subject, window, "count"))
            keys.append((f"{base}:total", subject, window, "total"))
    return keys


def _applies(rule: RiskRule, intent: PaymentIntent) -> bool:
    if rule.method and rule.method != intent.method:
        return False
    if rule.currency and rule.currency != intent.currency:
        return False
    if rule.card_tier and (intent.card is None or intent.card.product.tier != rule.card_tier):
        return False
    return rule.verification_level is None or intent.cardholder.verification_level == rule.verification_level


def _blocks(intent: PaymentIntent) -> Iterable[tuple[str, str]]:
    if intent.card is not None:
        yield RiskBlock.Kind.CARD_FINGERPRINT, intent.card.fingerprint
    yield RiskBlock.Kind.MERCHANT, intent.merchant.code
    if intent.device_id:
        yield RiskBlock.Kind.DEVICE, intent.device_id


def assess(
    intent: PaymentIntent,
    *,
    rules: list[RiskRule] | None = None,
    breakers: tuple[HealthStore, Sequence[tuple[str, BreakerPolicy]]] | None = None,
) -> Assessment:
    """Blocked lists, then every enabled rule that applies. Counts the payment unless it ends blocked.

    `breakers`: a health store and the channels whose breakers the payment's routing will ask for; when the counters
    and the breakers live in the same Redis, they are read in the counters' round trip (`Assessment.breakers`)."""
    assessment = Assessment()
    from .routing import load_config

    config = load_config()
    for kind, value in _blocks(intent):
        if (kind, value) in config.blocked:
            assessment.flag(RiskOutcome.BLOCK, f"blocked_{kind}", f"The {RiskBlock.Kind(kind).label} is blocked.")
    if assessment.outcome == RiskOutcome.BLOCK:
        return assessment
    if rules is None:
        rules = config.risk_rules
    applicable = [rule for rule in rules if _applies(rule, intent)]
    for rule in applicable:
        if rule.kind == RiskRule.Kind.AMOUNT and intent.amount > rule.threshold:
            assessment.flag(
                rule.action, "amount_limit", f"{rule.name}: {intent.amount} is above the limit {rule.threshold}.", rule
            )
    keys = _counter_keys(intent, time.time())
    increments = [
        (key, 1 if measure == "count" else intent.amount, 2 * WINDOW_SECONDS[window])
        for key, _, window, measure in keys
    ]
    store = counter_store()
    health, channels = breakers or (None, ())
    try:
        if (
            channels
            and isinstance(store, RedisCounters)
            and isinstance(health, RedisHealth)
            and health.url == store.url  # the breakers live in the counters' Redis
        ):
            redis_health = health
            values, assessment.breakers = store.add_along(
                increments, lambda pipeline: redis_health.queue_states(pipeline, channels)
            )
        else:
            values = store.add(increments)
    except Exception:  # not Redis being down (the Redis store counts in the process then): a store that is broken
        assessment.flag(RiskOutcome.REVIEW, "risk_counters_unavailable", "Velocity counters are unavailable.")
        return assessment
    assessment.counted = increments
    current = {
        (subject, window, measure): value for (_, subject, window, measure), value in zip(keys, values, strict=True)
    }
    for rule in applicable:
        if rule.kind == RiskRule.Kind.AMOUNT:
            continue
        counted = current.get((rule.subject, rule.window, rule.kind))
        if counted is not None and counted > rule.threshold:
            what = "payments" if rule.kind == RiskRule.Kind.COUNT else "in total"
            assessment.flag(
                rule.action,
                f"velocity_{rule.kind}",
                f"{rule.name}: {counted} {what} per {rule.subject} in the {rule.window}, above {rule.threshold}.",
                rule,
            )
    if assessment.outcome == RiskOutcome.BLOCK:
        uncount(assessment)
    return assessment


def uncount(assessment: Assessment) -> None:
    """Takes a blocked payment back out of the velocity counters (once): it will not go ahead."""
    increments, assessment.counted = assessment.counted, []
    if not increments:
        return
    try:
        counter_store().add([(key, -amount, ttl) for key, amount, ttl in increments])
    except Exception:  # the counters expire on their own; counting the payment once errs on caution
        logger.warning("could not take a payment back out of the risk counters", exc_info=True)
