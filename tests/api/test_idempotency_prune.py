"""Idempotency records are pruned after their retention, in batches, and a key is still replayed within 24 hours."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from core.idempotency import idempotency_records_prune, run_idempotent
from core.models import IdempotencyRecord, JobRun
from core.tasks import idempotency_prune
from payments.models import PaymentIntent
from tests.api.conftest import World, idem, pay_body

pytestmark = pytest.mark.django_db


def _aged(hours: float, **filters: Any) -> None:
    IdempotencyRecord.objects.filter(**filters).update(created_at=timezone.now() - dt.timedelta(hours=hours))


def _record(scope: str, key: str, hours: float) -> None:
    run_idempotent(scope=scope, key=key, operation="op", request={}, execute=lambda: {"ok": True})
    _aged(hours, scope=scope, key=key)


def test_the_job_deletes_what_is_past_retention_and_keeps_the_rest(settings: Any) -> None:
    settings.IDEMPOTENCY_RETENTION_HOURS = 48
    for index in range(3):
        _record("api:1", f"old-api-{index}", hours=49)
        _record("merchant:1", f"old-service-{index}", hours=72)
    _record("api:1:test", "old-test", hours=48.5)
    _record("api:1", "day-old", hours=47)
    _record("merchant:1", "fresh", hours=0)
    # A key still in progress long after any retry would come is gone too (it was taken over or abandoned).
    IdempotencyRecord.objects.create(scope="api:1", key="abandoned", operation="op", fingerprint="x")
    _aged(100, key="abandoned")

    assert idempotency_prune() == 8
    assert sorted(IdempotencyRecord.objects.values_list("key", flat=True)) == ["day-old", "fresh"]
    run = JobRun.objects.get(job="core.idempotency_prune")
    assert (run.status, run.done, run.counts) == ("succeeded", 8, {"deleted": 8})
    assert idempotency_prune() == 0


def test_pruning_goes_in_batches_oldest_first() -> None:
    for index in range(5):
        _record("api:1", f"old-{index}", hours=50 + index)
    _record("api:1", "kept", hours=25)
    batches: list[int] = []
    deleted = idempotency_records_prune(older_than=dt.timedelta(hours=48), batch_size=2, on_batch=batches.append)
    assert (deleted, batches) == (5, [2, 2, 1])
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["kept"]


def test_the_retention_is_never_under_the_24_hours_the_api_promises(settings: Any) -> None:
    _record("api:1", "k", hours=23.5)
    with pytest.raises(ValueError, match="at least 24 hours"):
        idempotency_records_prune(older_than=dt.timedelta(hours=23))
    settings.IDEMPOTENCY_RETENTION_HOURS = 12
    with pytest.raises(ValueError, match="at least 24 hours"):
        idempotency_prune()
    assert JobRun.objects.get(job="core.idempotency_prune").status == "failed"
    assert IdempotencyRecord.objects.filter(key="k").exists()


def test_a_key_is_replayed_within_24_hours_and_forgotten_after_the_retention(world: World, settings: Any) -> None:
    settings.IDEMPOTENCY_RETENTION_HOURS = 48
    recent, old = idem(), idem()
    status, first = world.api.post("payments", pay_body(world.card, 4200), key=recent)
    assert status == 201
    world.api.post("payments", pay_body(world.card, 1300), key=old)
    _aged(23.5, key=recent)  # the API's record (it stands for the service's: one record per request)
    _aged(49, key=old)
    assert IdempotencyRecord.objects.filter(key__in=[recent, old]).count() == 2
    assert not IdempotencyRecord.objects.filter(scope__startswith="merchant:").exists()

    assert idempotency_prune() == 1

    response = world.api.client.post(
        "/api/v1/payments", pay_body(world.card, 4200), format="json", HTTP_IDEMPOTENCY_KEY=recent
    )
    assert (response.status_code, response.json()) == (201, first)
    assert response["Idempotent-Replayed"] == "true"
    assert PaymentIntent.objects.count() == 2
    assert world.fake.charge_count() == 2
    assert not IdempotencyRecord.objects.filter(key=old).exists()


def test_the_schedule_is_created_by_migration() -> None:
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.get(name="Prune idempotency records")
    assert (task.task, task.enabled) == ("core.idempotency_prune", True)
    assert task.interval is not None
    assert (task.interval.every, task.interval.period) == (1, "hours")
