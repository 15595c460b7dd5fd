"""Reads owned by the platform layer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from .models import AuditLog, JobRun


def audit_for_object(object_type: str, object_id: str) -> QuerySet[AuditLog]:
    return AuditLog.objects.filter(object_type=object_type, object_id=object_id).order_by("at", "id")


def latest_job_runs(job: str, limit: int = 20) -> QuerySet[JobRun]:
    return JobRun.objects.filter(job=job).order_by("-started_at", "-id")[:limit]


def succeeded_periods(job: str, periods: list[str]) -> set[str]:
    """Which of `periods` have a finished, successful run of `job`."""
    return set(
        JobRun.objects.filter(job=job, period__in=periods, status=JobRun.Status.SUCCEEDED).values_list(
            "period", flat=True
        )
    )


def rows_streamed(queryset: QuerySet[Any], *, chunk_size: int) -> Iterator[Any]:
    """A large queryset's rows a chunk at a time through a server-side cursor, in a transaction of its own on the
    queryset's database: the cursor lives and dies within that transaction, so that streaming works the same behind a
    connection pooler in transaction mode (docs/scaling.md, "PgBouncer") as on a direct connection. Inside a caller's
    transaction it is a savepoint."""
    with transaction.atomic(using=queryset.db):
        yield from queryset.iterator(chunk_size=chunk_size)
