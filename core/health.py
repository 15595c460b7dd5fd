"""Health of the services the platform depends on."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db import connection

from .redis_fallback import fallbacks_in_use, redis_client


def check_database() -> dict[str, Any]:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 2)}


def check_redis() -> dict[str, Any]:
    """A PING with the platform's Redis timeouts, and the uses of Redis on their fallbacks in this process (every one
    while Redis does not answer: `core.redis_fallback`)."""
    if not settings.REDIS_URL:
        return {"ok": True, "configured": False}
    started = time.perf_counter()
    try:
        redis_client(settings.REDIS_URL).ping()
    except Exception as exc:
        return {
            "ok": False,
            "configured": True,
            "error": type(exc).__name__,
            "fallbacks": fallbacks_in_use(redis_down=True),
        }
    return {
        "ok": True,
        "configured": True,
        "ms": round((time.perf_counter() - started) * 1000, 2),
        "fallbacks": fallbacks_in_use(redis_down=False),
    }


def health() -> dict[str, Any]:
    """ "ok"; "degraded" when Redis does not answer (the platform works on its fallbacks); "down" when the database
    does not answer (nothing works)."""
    checks = {"database": check_database(), "redis": check_redis()}
    status = "ok" if checks["redis"]["ok"] else "degraded"
    if not checks["database"]["ok"]:
        status = "down"
    return {"status": status, **checks}
