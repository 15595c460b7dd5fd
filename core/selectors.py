"""Reads owned by the platform layer."""

from __future__ import annotations

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
