"""Fixed-window counts: atomic, the window set by the first count, on the cache's own key."""

from __future__ import annotations

import itertools
import threading
import time

import pytest
from django.core.cache import cache, caches

from core.counters import window_count

_keys = itertools.count()


def _key() -> str:
    return f"test-counter:{time.time_ns()}:{next(_keys)}"


def test_counts_up_and_the_cache_sees_and_resets_the_count() -> None:
    key = _key()
    assert [window_count(key, 60) for _ in range(3)] == [1, 2, 3]
    assert cache.get(key) == 3
    cache.delete(key)
    assert window_count(key, 60) == 1


@pytest.mark.redis
def test_with_redis_the_window_is_set_once_and_racing_counts_are_never_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    import redis
    from django.conf import settings

    def not_the_cache(*args: object, **kwargs: object) -> None:
        raise AssertionError("with Redis a count is one script call, not the cache's add + incr")

    monkeypatch.setattr(type(caches["default"]), "add", not_the_cache)
    client = redis.Redis.from_url(settings.REDIS_URL)
    key = _key()
    stored = cache.make_and_validate_key(key)
    window_count(key, 30)
    client.expire(stored, 5)  # were a later count to set the expiry again, it would go back to 30
    window_count(key, 30)
    assert 0 < client.ttl(stored) <= 5
    racing = _key()
    seen: list[int] = []
    lock = threading.Lock()

    def count() -> None:
        for _ in range(50):
            value = window_count(racing, 30)
            with lock:
                seen.append(value)

    threads = [threading.Thread(target=count) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seen) == list(range(1, 201))  # every count its own total: none lost, none repeated
    assert 0 < client.ttl(cache.make_and_validate_key(racing)) <= 30
    cache.delete(key)
    cache.delete(racing)
