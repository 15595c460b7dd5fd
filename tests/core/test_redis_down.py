"""Redis down, silent or back again: signing in, /healthz, the cache, the fallbacks themselves, and sending tasks."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import Any

import pytest
import redis
from celery import Celery
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from kombu.exceptions import OperationalError

from core.cache import shared_cache_down
from core.counters import window_count
from core.redis_fallback import RedisFallback, fallbacks_in_use
from tests.factories import PASSWORD, AllianceOperatorFactory, make_cardholder
from tests.redis_faults import CLOSED, RedisProxy, SilentServer, no_hang

pytestmark = pytest.mark.django_db

_apps = itertools.count()
LOCKED_EN = "Too many failed sign-ins. Please wait 15 minutes and try again."


def portal_sign_in(client: Client, username: str, password: str) -> Any:
    return client.post(reverse("login"), {"username": username, "password": password})


def admin_sign_in(client: Client, username: str, password: str) -> Any:
    return client.post(reverse("admin:login"), {"username": username, "password": password, "next": "/admin/"})


def test_the_portal_and_the_admin_sign_in_with_redis_down_and_still_lock_out(redis_down: None) -> None:
    holder = make_cardholder()
    operator = AllianceOperatorFactory()
    with no_hang():
        portal = Client(headers={"accept-language": "en"})
        assert portal_sign_in(portal, holder.user.username, PASSWORD).status_code == 302
        assert portal.get(reverse("payments:pay_code")).status_code == 200
        admin = Client(headers={"accept-language": "en"})
        assert admin_sign_in(admin, operator.username, PASSWORD).status_code == 302
        assert admin.get("/admin/").status_code == 200
        # The failures count in this process while Redis is down: a guessed password is still stopped.
        guesser = Client(headers={"accept-language": "en"})
        assert [admin_sign_in(guesser, holder.user.username, "wrong").status_code for _ in range(5)] == [200] * 5
        locked = portal_sign_in(guesser, holder.user.username, PASSWORD)
    assert locked.status_code == 429
    assert LOCKED_EN in locked.content.decode()
    assert shared_cache_down()


def test_a_redis_that_never_answers_does_not_hold_a_sign_in(
    point_redis_at: Callable[[str], None], silent_redis: SilentServer
) -> None:
    point_redis_at(silent_redis.url)
    operator = AllianceOperatorFactory()
    with no_hang():  # the cache's client gives up after REDIS_SOCKET_TIMEOUT, then leaves Redis alone
        assert admin_sign_in(Client(), operator.username, PASSWORD).status_code == 302
        assert portal_sign_in(Client(), make_cardholder().user.username, PASSWORD).status_code == 302


def test_healthz_reports_redis_down_and_the_fallbacks_in_use(client: Client, redis_down: None) -> None:
    portal_sign_in(Client(), make_cardholder().user.username, "wrong")  # the cache and the counts fall back
    with no_hang():
        response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200  # the platform serves on its fallbacks: a load balancer keeps it
    assert body["status"] == "degraded"
    assert body["database"]["ok"] is True
    redis_check = body["redis"]
    assert (redis_check["ok"], redis_check["configured"], redis_check["error"]) == (False, True, "ConnectionError")
    fallbacks = redis_check["fallbacks"]
    assert fallbacks["cache"] == "this process's own local-memory cache (sign-in lockouts count per process)"
    assert fallbacks["window_counts"] == "counts kept by each process (the sign-in lockout's failures)"
    assert {"risk_counters", "breakers", "rate_limit", "tasks"} <= set(fallbacks)


def test_a_fallback_skips_redis_for_a_pause_after_a_failure_then_tries_again(settings: Any) -> None:
    settings.REDIS_RECHECK_SECONDS = 3600
    use = RedisFallback("test_use", "the test's stand-in")
    tried: list[str] = []

    def failing() -> str:
        tried.append("redis")
        raise redis.ConnectionError("refused")

    assert use.call(CLOSED, failing, lambda: "fallback") == "fallback"
    assert use.call(CLOSED, failing, lambda: "fallback") == "fallback"
    assert tried == ["redis"]  # the second call did not wait on Redis again
    assert use.in_use
    assert fallbacks_in_use(redis_down=False) == {"test_use": "the test's stand-in"}
    settings.REDIS_RECHECK_SECONDS = 0
    assert use.call(CLOSED, lambda: "redis", lambda: "fallback") == "redis"
    assert not use.in_use
    assert "test_use" not in fallbacks_in_use(redis_down=False)


def test_every_redis_client_gives_up_on_a_redis_that_never_answers(
    point_redis_at: Callable[[str], None], silent_redis: SilentServer, settings: Any
) -> None:
    """The cache's, the counting script's, the risk counters', the breakers', /healthz's and the task broker's: each
    connects to a server that accepts and never replies, and gives up (falling back, or raising the broker's error)."""
    from core.health import check_redis
    from payments.health import BreakerPolicy, RedisHealth
    from payments.risk import RedisCounters

    settings.REDIS_RECHECK_SECONDS = 0  # no pause after a failure: each client waits on the silent server itself
    point_redis_at(silent_redis.url)
    with no_hang():
        cache.set("k", "v")
        assert cache.get("k") == "v"  # this process's own, while Redis does not answer
        assert window_count("count", 60) == 1
        assert RedisCounters(silent_redis.url).add([("x", 1, 60)]) == [1]
        assert RedisHealth(silent_redis.url).allow("channel", BreakerPolicy()) is True
        assert check_redis()["ok"] is False
        broker = _app_from_settings(silent_redis.url)
        with pytest.raises(OperationalError):
            broker.tasks[f"{broker.main}.noop"].delay(1)


def _app_from_settings(broker: str) -> Celery:
    """A Celery app configured from Django settings as the platform's is (settings/celery.py), on `broker`."""
    app = Celery(f"redis-down-{next(_apps)}", set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.conf.update(broker_url=broker, result_backend=broker, task_always_eager=False)

    @app.task(name=f"{app.main}.noop")
    def noop(value: int) -> int:
        return value

    return app


def test_sending_a_task_to_a_broker_that_is_down_fails_at_once_with_the_brokers_error() -> None:
    """What a request that sends a task after commit meets when the broker is down (core.enqueue logs it): kombu's
    OperationalError, without waiting on a result backend (tasks' results are not kept)."""
    app = _app_from_settings(CLOSED)
    with no_hang(10):
        with pytest.raises(OperationalError):
            app.tasks[f"{app.main}.noop"].delay(1)
        with pytest.raises(OperationalError):
            app.tasks[f"{app.main}.noop"].apply_async(args=(1,), countdown=60)


@pytest.mark.redis
def test_the_cache_goes_back_to_redis_when_it_answers_again(
    point_redis_at: Callable[[str], None], redis_proxy: RedisProxy, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.REDIS_RECHECK_SECONDS = 0
    point_redis_at(redis_proxy.url)
    shared = redis.Redis.from_url(redis_proxy.upstream_url)
    cache.set("before", 1)
    assert shared.exists(cache.make_and_validate_key("before"))
    redis_proxy.stop()
    with caplog.at_level(logging.INFO, logger="core.redis_fallback"):
        cache.set("during", 2)
        assert cache.get("during") == 2
        assert shared_cache_down()
        redis_proxy.start()
        cache.set("after", 3)
    assert not shared_cache_down()
    assert shared.exists(cache.make_and_validate_key("after"))
    assert not shared.exists(cache.make_and_validate_key("during"))
    assert cache.get("during") is None  # what this process kept alone is forgotten: Redis is the cache again
    messages = [record.getMessage() for record in caplog.records]
    assert any(message.startswith("Redis unreachable") and "cache falls back" in message for message in messages)
    assert any(message.startswith("Redis answers again") and ": cache uses it again" in message for message in messages)
