"""Counting in fixed windows in the shared cache (Redis in production, shared by every process)."""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.core.cache import cache

# One command: the count goes up by one, and the first count of a window gives the key its expiry (later ones never
# extend it). Atomic, so racing processes each see their own total and no key is ever left without an expiry.
_COUNT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


def window_count(key: str, seconds: int) -> int:
    """Adds one to `key`'s count and returns the new count. The window starts with the first count and is not extended
    by later ones; the increment is atomic, so racing processes each see their own total (no lost updates).

    With Redis as the default cache this is one round trip through a client kept for the process (Django's cache builds
    a client for every call, and its `add` then `incr` are three round trips), on the very key the cache uses, so
    `cache.get` and `cache.delete` see the count."""
    script = _redis_count_script()
    if script is not None:
        return int(script(keys=[cache.make_and_validate_key(key)], args=[seconds]))
    cache.add(key, 0, seconds)
    try:
        return int(cache.incr(key))
    except ValueError:  # the window ended between the two calls
        cache.set(key, 1, seconds)
        return 1


@functools.cache
def _redis_count_script() -> Any:
    """The counting script on a client of the default cache's Redis, or None when the cache is not Redis."""
    backend = settings.CACHES["default"]
    if not backend["BACKEND"].endswith(".RedisCache"):
        return None
    import redis

    location = backend["LOCATION"]
    client = redis.Redis.from_url(location if isinstance(location, str) else location[0])
    return client.register_script(_COUNT)
