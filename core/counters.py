"""Counting in fixed windows in the shared cache (Redis in production, shared by every process)."""

from __future__ import annotations

from django.core.cache import cache


def window_count(key: str, seconds: int) -> int:
    """Adds one to `key`'s count and returns the new count. The window starts with the first count and is not extended
    by later ones; the increment is atomic, so racing processes each see their own total (no lost updates)."""
    cache.add(key, 0, seconds)
    try:
        return int(cache.incr(key))
    except ValueError:  # the window ended between the two calls
        cache.set(key, 1, seconds)
        return 1
