"""Channel health: recent outcomes per channel and method, and a circuit breaker per channel.

closed → open on N consecutive failures, or a failure rate over the window → half-open after the cool-down, letting one
probe through → closed on its success, open again on its failure. Only channel failures count (errors, timeouts), never
a card's decline. With Redis configured the state lives there, so every web process agrees; otherwise in-process.
While Redis cannot be reached the Redis store keeps the breakers in the process instead (`core.redis_fallback`), and
goes back to Redis as soon as it answers.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from django.conf import settings

from core.redis_fallback import RedisFallback, redis_client

T = TypeVar("T")


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerPolicy:
    consecutive_failures: int = 5
    failure_rate: float = 0.5
    window: int = 20
    cooldown_seconds: float = 30.0


class HealthStore(Protocol):
    def record(self, channel: str, method: str, success: bool, policy: BreakerPolicy) -> BreakerState: ...

    def success_rate(self, channel: str, method: str) -> tuple[float, int]: ...

    def state(self, channel: str, policy: BreakerPolicy) -> BreakerState: ...

    def states(self, channels: Sequence[tuple[str, BreakerPolicy]]) -> dict[str, BreakerState]:
        """`state` of each channel, by code, read together (one round trip)."""
        ...

    def allow(self, channel: str, policy: BreakerPolicy) -> bool: ...

    def reset(self) -> None: ...


@dataclass
class _Breaker:
    state: BreakerState = BreakerState.CLOSED
    consecutive: int = 0
    opened_at: float = 0.0
    probe_in_flight: bool = False


class InProcessHealth:
    def __init__(self, clock: Any = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._outcomes: dict[tuple[str, str], deque[bool]] = {}
        self._channel_window: dict[str, deque[bool]] = {}
        self._breakers: dict[str, _Breaker] = {}
        self.clock = clock

    def reset(self) -> None:
        with self._lock:
            self._outcomes.clear()
            self._channel_window.clear()
            self._breakers.clear()

    def record(self, channel: str, method: str, success: bool, policy: BreakerPolicy) -> BreakerState:
        with self._lock:
            self._outcomes.setdefault((channel, method), deque(maxlen=100)).append(success)
            window = self._channel_window.setdefault(channel, deque(maxlen=policy.window))
            window.append(success)
            breaker = self._breakers.setdefault(channel, _Breaker())
            now = self.clock()
            if breaker.state == BreakerState.HALF_OPEN or breaker.probe_in_flight:
                breaker.probe_in_flight = False
                if success:
                    self._breakers[channel] = _Breaker()
                    window.clear()
                else:
                    breaker.state, breaker.opened_at = BreakerState.OPEN, now
                return self._breakers[channel].state
            if success:
                breaker.consecutive = 0
                return breaker.state
            breaker.consecutive += 1
            failures = sum(1 for ok in window if not ok)
            rate_tripped = len(window) >= max(policy.window // 2, 1) and failures / len(window) > policy.failure_rate
            if breaker.state == BreakerState.CLOSED and (
                breaker.consecutive >= policy.consecutive_failures or rate_tripped
            ):
                breaker.state, breaker.opened_at = BreakerState.OPEN, now
            return breaker.state

    def success_rate(self, channel: str, method: str) -> tuple[float, int]:
        with self._lock:
            outcomes = self._outcomes.get((channel, method))
            if not outcomes:
                return 0.0, 0
            return sum(outcomes) / len(outcomes), len(outcomes)

    def state(self, channel: str, policy: BreakerPolicy) -> BreakerState:
        with self._lock:
            breaker = self._breakers.get(channel)
            if breaker is None:
                return BreakerState.CLOSED
            if breaker.state == BreakerState.OPEN and self.clock() - breaker.opened_at >= policy.cooldown_seconds:
                return BreakerState.HALF_OPEN
            return breaker.state

    def states(self, channels: Sequence[tuple[str, BreakerPolicy]]) -> dict[str, BreakerState]:
        return {channel: self.state(channel, policy) for channel, policy in channels}

    def allow(self, channel: str, policy: BreakerPolicy) -> bool:
        with self._lock:
            breaker = self._breakers.get(channel)
            if breaker is None or breaker.state == BreakerState.CLOSED:
                return True
            if breaker.state == BreakerState.OPEN and self.clock() - breaker.opened_at >= policy.cooldown_seconds:
                breaker.state = BreakerState.HALF_OPEN
            if breaker.state == BreakerState.HALF_OPEN and not breaker.probe_in_flight:
                breaker.probe_in_flight = True
                return True
            return False


# KEYS: breaker hash, channel window list, method outcomes list. ARGV: success(0/1), now, consecutive threshold,
# failure rate, window, cooldown. Returns the new state. One script, so concurrent processes never interleave.
_RECORD = """
local breaker, window, outcomes = KEYS[1], KEYS[2], KEYS[3]
local success, now = tonumber(ARGV[1]), tonumber(ARGV[2])
local threshold, rate, size = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('LPUSH', outcomes, success) redis.call('LTRIM', outcomes, 0, 99)
redis.call('LPUSH', window, success) redis.call('LTRIM', window, 0, size - 1)
local state = redis.call('HGET', breaker, 'state') or 'closed'
local probe = redis.call('HGET', breaker, 'probe') == '1'
if state == 'half_open' or probe then
  if success == 1 then
    redis.call('DEL', breaker) redis.call('DEL', window) return 'closed'
  end
  redis.call('HSET', breaker, 'state', 'open', 'opened_at', now, 'probe', '0') return 'open'
end
if success == 1 then redis.call('HSET', breaker, 'consecutive', 0) return state end
local consecutive = redis.call('HINCRBY', breaker, 'consecutive', 1)
local items = redis.call('LRANGE', window, 0, -1)
local failures = 0
for _, v in ipairs(items) do if v == '0' then failures = failures + 1 end end
local min = math.max(math.floor(size / 2), 1)
local tripped = #items >= min and failures / #items > rate
if state == 'closed' and (consecutive >= threshold or tripped) then
  redis.call('HSET', breaker, 'state', 'open', 'opened_at', now) return 'open'
end
return state
"""
_ALLOW = """
local breaker, now, cooldown = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HGET', breaker, 'state') or 'closed'
if state == 'closed' then return 1 end
if state == 'open' and now - tonumber(redis.call('HGET', breaker, 'opened_at') or '0') >= cooldown then
  state = 'half_open' redis.call('HSET', breaker, 'state', 'half_open')
end
if state == 'half_open' and redis.call('HGET', breaker, 'probe') ~= '1' then
  redis.call('HSET', breaker, 'probe', '1') return 1
end
return 0
"""


_IN_PROCESS = RedisFallback("breakers", "per-process circuit breakers and channel outcomes")


class RedisHealth:
    """The breakers in Redis; while Redis cannot be reached, in `local` (this process's own, `_IN_PROCESS`)."""

    prefix = "mengka:health"

    def __init__(self, url: str, clock: Any = time.time) -> None:
        self.url = url
        self.client = redis_client(url)
        self._record = self.client.register_script(_RECORD)
        self._allow = self.client.register_script(_ALLOW)
        self.clock = clock
        self.local = InProcessHealth(clock=clock)

    def _either(self, shared: Callable[[], T], local: Callable[[InProcessHealth], T]) -> T:
        return _IN_PROCESS.call(self.url, shared, lambda: local(self.local))

    def _keys(self, channel: str, method: str = "") -> list[str]:
        return [
            f"{self.prefix}:breaker:{channel}",
            f"{self.prefix}:window:{channel}",
            f"{self.prefix}:out:{channel}:{method}",
        ]

    def reset(self) -> None:
        self.local.reset()
        for key in self.client.scan_iter(f"{self.prefix}:*"):
            self.client.delete(key)

    def record(self, channel: str, method: str, success: bool, policy: BreakerPolicy) -> BreakerState:
        return self._either(
            lambda: self._record_shared(channel, method, success, policy),
            lambda local: local.record(channel, method, success, policy),
        )

    def _record_shared(self, channel: str, method: str, success: bool, policy: BreakerPolicy) -> BreakerState:
        args = [
            int(success),
            self.clock(),
            policy.consecutive_failures,
            policy.failure_rate,
            policy.window,
            policy.cooldown_seconds,
        ]
        state = self._record(keys=self._keys(channel, method), args=args)
        return BreakerState(state.decode() if isinstance(state, bytes) else state)

    def success_rate(self, channel: str, method: str) -> tuple[float, int]:
        return self._either(
            lambda: self._success_rate_shared(channel, method), lambda local: local.success_rate(channel, method)
        )

    def _success_rate_shared(self, channel: str, method: str) -> tuple[float, int]:
        items: list[bytes] = self.client.lrange(self._keys(channel, method)[2], 0, -1)  # type: ignore[assignment]
        if not items:
            return 0.0, 0
        return sum(int(item) for item in items) / len(items), len(items)

    def state(self, channel: str, policy: BreakerPolicy) -> BreakerState:
        return self.states([(channel, policy)])[channel]

    def states(self, channels: Sequence[tuple[str, BreakerPolicy]]) -> dict[str, BreakerState]:
        if not channels:
            return {}
        return self._either(lambda: self._states_shared(channels), lambda local: local.states(channels))

    def _states_shared(self, channels: Sequence[tuple[str, BreakerPolicy]]) -> dict[str, BreakerState]:
        if len(channels) == 1:  # one command: no pipeline to build
            (channel, policy), key = channels[0], self._keys(channels[0][0])[0]
            values: list[bytes | None] = self.client.hmget(key, ["state", "opened_at"])  # type: ignore[assignment]
            return {channel: _breaker_state(values, policy, self.clock())}
        pipeline = self.client.pipeline(transaction=False)
        parse = self.queue_states(pipeline, channels)
        return parse(pipeline.execute())

    def queue_states(
        self, pipeline: Any, channels: Sequence[tuple[str, BreakerPolicy]]
    ) -> Callable[[list[Any]], dict[str, BreakerState]]:
        """Queues the reads of `channels`' breakers on `pipeline` (of a client of this store's Redis, which may carry
        other commands in the same round trip); returns what turns their replies, in order, into `states`."""
        for channel, _policy in channels:
            pipeline.hmget(self._keys(channel)[0], ["state", "opened_at"])

        def parse(replies: list[Any]) -> dict[str, BreakerState]:
            now = self.clock()
            return {
                channel: _breaker_state(values, policy, now)
                for (channel, policy), values in zip(channels, replies, strict=True)
            }

        return parse

    def allow(self, channel: str, policy: BreakerPolicy) -> bool:
        return self._either(
            lambda: bool(self._allow(keys=self._keys(channel)[:1], args=[self.clock(), policy.cooldown_seconds])),
            lambda local: local.allow(channel, policy),
        )


def _breaker_state(values: list[bytes | None], policy: BreakerPolicy, now: float) -> BreakerState:
    state = (values[0] or b"closed").decode()
    if state == "open" and now - float(values[1] or 0) >= policy.cooldown_seconds:
        return BreakerState.HALF_OPEN
    return BreakerState(state)


_store: HealthStore | None = None


def health_store() -> HealthStore:
    global _store
    if _store is None:
        _store = RedisHealth(settings.REDIS_URL) if settings.REDIS_URL else InProcessHealth()
    return _store


def set_health_store(store: HealthStore | None) -> None:
    """For tests: swap the store (None: rebuild from settings on next use)."""
    global _store
    _store = store
