"""The shared cache: Django's Redis cache, with this process's local-memory cache standing in while Redis fails."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache

from .redis_fallback import RedisFallback, client_options

T = TypeVar("T")

_LOCAL_NAME = "mengka-redis-fallback"


def _forget_local() -> None:
    # What was written here while Redis was down must not come back at the next outage.
    LocMemCache(_LOCAL_NAME, {}).clear()


_FALLBACK = RedisFallback(
    "cache", "this process's own local-memory cache (sign-in lockouts count per process)", on_recover=_forget_local
)


class RedisCacheWithFallback(BaseCache):
    """`django.core.cache.backends.redis.RedisCache` on LOCATION, its client built with the platform's Redis options
    (`core.redis_fallback.client_options`: connect and read timeouts, no retries; OPTIONS may add pool options).
    While Redis cannot be reached every call goes to a local-memory cache of this process instead (`RedisFallback`
    "cache"), so whatever uses the cache — the sign-in lockout, routing's configuration version, the calendar — keeps
    working, each process on its own, until Redis answers again."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(params)
        self.location = server
        self.redis = RedisCache(server, {**params, "OPTIONS": {**client_options(), **params.get("OPTIONS", {})}})
        self.local = LocMemCache(_LOCAL_NAME, {**params, "OPTIONS": {"MAX_ENTRIES": 10_000}})

    def _call(self, operation: Callable[[BaseCache], T]) -> T:
        return _FALLBACK.call(self.location, lambda: operation(self.redis), lambda: operation(self.local))

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return self._call(lambda cache: cache.add(key, value, timeout, version))

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return self._call(lambda cache: cache.get(key, default, version))

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        self._call(lambda cache: cache.set(key, value, timeout, version))

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return self._call(lambda cache: cache.touch(key, timeout, version))

    def delete(self, key: Any, version: int | None = None) -> bool:
        return self._call(lambda cache: cache.delete(key, version))

    def get_many(self, keys: Iterable[Any], version: int | None = None) -> dict[Any, Any]:
        keys = list(keys)
        return self._call(lambda cache: cache.get_many(keys, version))

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return self._call(lambda cache: cache.has_key(key, version))

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return self._call(lambda cache: cache.incr(key, delta, version))

    def set_many(self, data: dict[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> list[Any]:
        return self._call(lambda cache: cache.set_many(data, timeout, version))

    def delete_many(self, keys: Iterable[Any], version: int | None = None) -> None:
        keys = list(keys)
        self._call(lambda cache: cache.delete_many(keys, version))

    def clear(self) -> None:
        self.local.clear()
        self._call(lambda cache: cache.clear())

    def close(self, **kwargs: Any) -> None:
        self.redis.close(**kwargs)


def shared_cache_down() -> bool:
    """Whether the default cache is, just now, this process's own stand-in (Redis failed and has not answered since):
    what another process writes to the cache is not seen here until Redis answers again."""
    return _FALLBACK.in_use
