from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from django.conf import settings

from settings.celery import app


def test_celery_is_configured_safely() -> None:
    conf = app.conf
    assert conf.accept_content == ["json"]
    assert conf.task_serializer == "json"
    assert conf.result_serializer == "json"
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_time_limit
    assert conf.task_soft_time_limit < conf.task_time_limit
    assert conf.beat_scheduler == "django_celery_beat.schedulers:DatabaseScheduler"
    assert conf.timezone == "Asia/Shanghai"


@pytest.mark.django_db
def test_beat_schedules_are_created_by_migration() -> None:
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.get(name="Business calendar coverage")
    assert task.task == "core.calendar_coverage"
    assert task.crontab is not None
    assert task.crontab.hour == "6"


@pytest.mark.redis
def test_a_real_worker_consumes_a_task_from_redis() -> None:
    """Starts `celery worker` as a subprocess on Redis and sends it a task: no eager mode anywhere. The worker uses
    this run's database server (DATABASE_URL, or the embedded one, already running); the task does not touch it."""
    broker = settings.REDIS_URL
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "settings.dev",
        "REDIS_URL": broker,
        "CELERY_TASK_ALWAYS_EAGER": "false",
    }
    queue = f"test-{uuid.uuid4().hex[:8]}"
    node = f"pytest-{queue}@localhost"
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "settings",
            "worker",
            "-Q",
            queue,
            "-n",
            node,
            "-c",
            "1",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "WARNING",
        ],
        env=env,
        cwd=settings.BASE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    previous = (app.conf.task_always_eager, app.conf.broker_url, app.conf.result_backend)
    try:
        app.conf.task_always_eager = False
        app.conf.broker_url = broker
        app.conf.result_backend = broker
        token = uuid.uuid4().hex
        result = app.send_task("core.ping", args=[token], queue=queue)
        answer = result.get(timeout=60)
        assert answer["token"] == token
        assert answer["eager"] is False
        assert answer["hostname"] == node
    finally:
        app.conf.task_always_eager, app.conf.broker_url, app.conf.result_backend = previous
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()


def test_every_task_has_its_job_class_queue() -> None:
    """Each task is routed to the queue of its class, named once; a task added without a queue fails here."""
    app.loader.import_default_modules()
    registered = {name for name in app.tasks if not name.startswith("celery.")}
    named = [task for tasks in settings.TASK_QUEUES.values() for task in tasks]
    assert len(named) == len(set(named)), "a task is named in two queues"
    assert set(named) == registered
    for queue, tasks in settings.TASK_QUEUES.items():
        for task in tasks:
            assert app.amqp.router.route({}, task)["queue"].name == queue
    assert app.amqp.router.route({}, "payments.settlement_t1")["queue"].name == "settlement"
    assert app.amqp.router.route({}, "merchants.webhook_deliver")["queue"].name == "webhooks"


@pytest.mark.redis
def test_a_settlement_waits_on_its_own_queue_not_on_the_webhooks() -> None:
    """Sent for real to Redis with no worker listening: the settlement's message lies in the `settlement` list, and
    the webhooks' queue, which its own workers read, holds nothing of it."""
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete("settlement", "webhooks")
    previous = (app.conf.task_always_eager, app.conf.broker_url)
    try:
        app.conf.task_always_eager = False
        app.conf.broker_url = settings.REDIS_URL
        app.send_task("payments.settlement_t1")
        assert client.llen("settlement") == 1
        assert client.llen("webhooks") == 0
    finally:
        app.conf.task_always_eager, app.conf.broker_url = previous
        client.delete("settlement")
