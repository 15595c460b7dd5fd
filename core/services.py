"""Writes owned by the platform layer."""

from __future__ import annotations

from typing import Any

from .audit import audit_record, snapshot
from .calendar import invalidate_calendar

__all__ = ("audit_record", "calendar_changed", "job_rerun", "snapshot")


def calendar_changed() -> None:
    """Every process re-reads the calendar (at once here, within minutes elsewhere when the cache is local)."""
    invalidate_calendar()


def job_rerun(*, run_id: int, actor: Any) -> str:
    """Runs a job again through its own entry point (its Celery task, idempotent), audited; answers the task's name.
    Refused for a job with no registered entry point, and while a run of it is still running."""
    from celery import current_app

    from .errors import Conflict, ValidationFailed
    from .jobs import job_kind
    from .models import JobRun

    run = JobRun.objects.filter(pk=run_id).first()
    if run is None:
        raise ValidationFailed("No such job run.", code="job_unknown")
    kind = job_kind(run.job)
    if kind is None or not kind.task:
        raise ValidationFailed(f"Job {run.job} cannot be re-run from the admin.", code="job_not_rerunnable")
    if JobRun.objects.filter(job=run.job, status=JobRun.Status.RUNNING).exists():
        raise Conflict(f"Job {run.job} is running.", code="job_running")
    audit_record(actor=actor, action="job.rerun", obj=run, after={"task": kind.task, "period": run.period})
    current_app.loader.import_default_modules()  # the apps' tasks modules, as a worker loads them at start
    current_app.tasks[kind.task].delay()
    return kind.task
