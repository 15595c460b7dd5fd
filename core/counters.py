"""Counting in fixed windows in the shared cache (Redis in production, shared by every process)."""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.core.cache import cache

from .redis_fallback import RedisFallback, redis_client

# One command: the count goes up by one, and the first count of a window gives the key its expiry (later ones never
# extend it). Atomic, so racing processes each see their own total and no key is ever left without an expiry.
_COUNT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""

_PER_PROCESS = RedisFallback("window_counts", "counts kept by each process (the sign-in lockout's failures)")


def window_count(key: str, seconds: int) -> int:
    """Adds one to `key`'s count and returns the new count. The window starts with the first count and is not extended
    by later ones; the increment is atomic, so racing processes each see their own total (no lost updates).

    With Redis as the default cache this is one round trip through a client kept for the process (Django's cache builds
    a client for every call, and its `add` then `incr` are three round trips), on the very key the cache uses, so
    `cache.get` and `cache.delete` see the count. While Redis cannot be reached the count goes on in the cache's
    stand-in (this process's local memory, `core.cache`): each process counts on its own until Redis answers again."""
    location = _redis_location()
    if location is None:
        return _cache_count(key, seconds)
    return _PER_PROCESS.call(location, lambda: _redis_count(location, key, seconds), lambda: _cache_count(key, seconds))


def window_count_if_shared(key: str, seconds: int, *, fallback: RedisFallback) -> int | None:
    """`window_count`, or None — nothing counted — while Redis cannot be reached, for a count that is worth nothing
    unless every process shares it. `fallback` names the use (for the warning and /healthz)."""
    location = _redis_location()
    if location is None:
        return _cache_count(key, seconds)
    return fallback.call(location, lambda: _redis_count(location, key, seconds), lambda: None)


def _cache_count(key: str, seconds: int) -> int:
    cache.add(key, 0, seconds)
    try:
        return int(cache.incr(key))
    except ValueError:  # the window ended between the two calls
        cache.set(key, 1, seconds)
        return 1


def _redis_location() -> str | None:
    """The default cache's Redis, or None when the cache is not Redis."""
    backend = settings.CACHES["default"]
    if not backend["BACKEND"].endswith(("RedisCache", "RedisCacheWithFallback")):
        return None
    location = backend["LOCATION"]
    return location if isinstance(location, str) else location[0]


def _redis_count(location: str, key: str, seconds: int) -> int:
    return int(_count_script(location)(keys=[cache.make_and_validate_key(key)], args=[seconds]))


@functools.cache
def _count_script(location: str) -> Any:
    """The counting script on a client of this process for the Redis at `location`."""
    return redis_client(location).register_script(_COUNT)
