"""Sending tasks once a transaction has committed, where a broker that is down never undoes the response."""

from __future__ import annotations

import logging
from typing import Any

import redis
from django.db import transaction
from kombu.exceptions import OperationalError

from .redis_fallback import RedisFallback

logger = logging.getLogger(__name__)

_NOT_SENT = RedisFallback("tasks", "tasks not sent: the scheduled jobs do their work later")


def enqueue_on_commit(task: Any, *calls: tuple[Any, ...], otherwise: str, **options: Any) -> None:
    """Sends `task` once for each of `calls` (its positional arguments; `options` go to `apply_async`) when the current
    transaction commits, or at once outside one.

    What the task does is already committed by then, so a broker that cannot be reached (or stops answering: the
    broker's connect and read timeouts, one retry) is not the caller's failure: the tasks not sent are logged with
    `otherwise` — what does their work in their place, e.g. "merchants.webhooks_retry sends it" — and the caller's
    response stands. With tasks run inline (CELERY_TASK_ALWAYS_EAGER) there is no broker, and a task's own error
    propagates as it always did."""
    if calls:
        transaction.on_commit(lambda: _send(task, calls, options, otherwise))


def _send(task: Any, calls: tuple[tuple[Any, ...], ...], options: dict[str, Any], otherwise: str) -> None:
    def send(args: tuple[Any, ...]) -> None:
        if options:
            task.apply_async(args=args, **options)
        else:
            task.delay(*args)

    conf = task.app.conf
    if conf.task_always_eager:
        for args in calls:
            send(args)
        return
    sent = 0

    def send_all() -> None:
        nonlocal sent
        for args in calls[sent:]:
            send(args)
            sent += 1

    def not_sent() -> None:
        logger.info("task %s not sent for %s (broker unreachable): %s", task.name, list(calls[sent:]), otherwise)

    _NOT_SENT.call(conf.broker_url, send_all, not_sent, errors=(OperationalError, redis.RedisError))
