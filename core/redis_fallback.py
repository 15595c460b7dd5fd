"""Redis clients with bounded waits, and what each use of Redis does while Redis cannot be reached.

Every client the platform builds (`redis_client`, the cache's, Celery's) gives up connecting after
`REDIS_CONNECT_TIMEOUT` seconds and waiting for a reply after `REDIS_SOCKET_TIMEOUT`, and never retries by itself: a
request never hangs on Redis.

Each use of Redis names its fallback (`RedisFallback`). While Redis fails, its calls go to the fallback: in-process
counters, this process's own cache, an open rate limit... A warning is logged when a use falls back, then at most once
every `REDIS_FALLBACK_WARNING_SECONDS` with the number of calls that fell back since. After a failure this process
leaves that Redis alone for `REDIS_RECHECK_SECONDS` (an unreachable host costs one timeout per pause, not one per
call); the first call after the pause tries it again, and once Redis answers every use goes back to it, without a
restart. The state is per process; `/healthz` reports it (`fallbacks_in_use`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

T = TypeVar("T")

logger = logging.getLogger(__name__)


def client_options() -> dict[str, Any]:
    """The connection options of every Redis client the platform builds: bounded waits, no retries of its own."""
    return {
        "socket_connect_timeout": settings.REDIS_CONNECT_TIMEOUT,
        "socket_timeout": settings.REDIS_SOCKET_TIMEOUT,
        "retry": Retry(NoBackoff(), 0),
    }


def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, **client_options())


def masked(url: str) -> str:
    """The URL without its password, for logs and /healthz."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    where = f"{host}:{parts.port}" if parts.port else host
    return f"{parts.scheme}://{where}{parts.path}"


@dataclass
class _Use:
    description: str
    since: float | None = None  # when this use last started falling back (epoch seconds); None: it uses Redis
    calls: int = 0  # calls that fell back since the last warning
    warned_at: float = float("-inf")  # monotonic


_lock = threading.Lock()
_uses: dict[str, _Use] = {}
_failed_at: dict[str, float] = {}  # Redis URL → when it last failed (monotonic); not tried again for a pause after
_errors: dict[str, str] = {}  # Redis URL → the last error's class name


class RedisFallback:
    """One use of Redis (`name`, e.g. "risk_counters") and what stands in for it while Redis fails (`description`,
    for logs and /healthz). `on_recover` runs when the use gets an answer from Redis again after falling back."""

    def __init__(self, name: str, description: str, *, on_recover: Callable[[], None] | None = None) -> None:
        self.name = name
        self.on_recover = on_recover
        with _lock:
            _uses.setdefault(name, _Use(description))

    @property
    def in_use(self) -> bool:
        return _uses[self.name].since is not None

    def call(
        self,
        url: str,
        primary: Callable[[], T],
        fallback: Callable[[], T],
        *,
        errors: tuple[type[BaseException], ...] = (redis.RedisError,),
    ) -> T:
        """`primary()` (its calls to the Redis at `url`), or `fallback()` when it raises one of `errors` or when
        that Redis failed less than `REDIS_RECHECK_SECONDS` ago."""
        if time.monotonic() - _failed_at.get(url, float("-inf")) >= settings.REDIS_RECHECK_SECONDS:
            try:
                result = primary()
            except errors as exc:
                with _lock:
                    _failed_at[url] = time.monotonic()
                    _errors[url] = type(exc).__name__
            else:
                self._answered(url)
                return result
        self._fell_back(url)
        return fallback()

    def _answered(self, url: str) -> None:
        use = _uses[self.name]
        if use.since is None and url not in _failed_at:
            return
        with _lock:
            _failed_at.pop(url, None)
            _errors.pop(url, None)
            since, use.since, calls, use.calls = use.since, None, use.calls, 0
        if since is None:
            return
        logger.info(
            "Redis answers again (%s): %s uses it again after %.0f s on %s (%d more calls fell back)",
            masked(url),
            self.name,
            time.time() - since,
            use.description,
            calls,
        )
        if self.on_recover is not None:
            self.on_recover()

    def _fell_back(self, url: str) -> None:
        use = _uses[self.name]
        now = time.monotonic()
        with _lock:
            use.calls += 1
            if use.since is None:
                use.since = time.time()
            if now - use.warned_at < settings.REDIS_FALLBACK_WARNING_SECONDS:
                return
            use.warned_at, calls, use.calls = now, use.calls, 0
        logger.warning(
            "Redis unreachable (%s, %s): %s falls back to %s (calls fallen back since the last warning: %d)",
            masked(url),
            _errors.get(url, "paused"),
            self.name,
            use.description,
            calls,
        )


def fallbacks_in_use(*, redis_down: bool) -> dict[str, str]:
    """Each use of Redis in this process that is on its fallback, with the fallback; every one known to this process
    when Redis is down (they fall back on their next call)."""
    with _lock:
        return {name: use.description for name, use in sorted(_uses.items()) if redis_down or use.since is not None}


def reset_fallbacks() -> None:
    """For tests: every use back on Redis, no pause, no warning remembered."""
    with _lock:
        _failed_at.clear()
        _errors.clear()
        for use in _uses.values():
            use.since, use.calls, use.warned_at = None, 0, float("-inf")
