from __future__ import annotations

import socket
from datetime import timedelta
from typing import IO, Any

from celery import shared_task
from django.conf import settings

from .approvals import approvals_expire
from .calendar import load_calendar, local_now
from .idempotency import idempotency_records_prune
from .jobs import job_run
from .partitions import partitions_maintain


@shared_task(name="core.ping", bind=True, ignore_result=False)
def ping(self: Any, token: str) -> dict[str, Any]:
    """Answers who ran it: proves a real worker consumed the message (not eager mode). The one task whose result is
    kept (CELERY_TASK_IGNORE_RESULT): its caller waits for it."""
    return {
        "token": token,
        "eager": bool(self.request.is_eager),
        "hostname": self.request.hostname or socket.gethostname(),
    }


@shared_task(name="core.calendar_coverage")
def calendar_coverage() -> dict[str, Any]:
    """Daily: warns (as a failed job run) when the business calendar does not cover next year yet."""
    next_year = local_now().year + 1
    with job_run("core.calendar_coverage", period=local_now().date().isoformat()) as run:
        calendar = load_calendar()
        covered = calendar.last_year is not None and calendar.last_year >= next_year
        run.count(covered=int(covered))
        if not covered:
            raise RuntimeError(f"The business calendar has no data for {next_year}: add the State Council notice.")
    return {"covered_through": calendar.last_year}


@shared_task(name="core.idempotency_prune")
def idempotency_prune() -> int:
    """Hourly: deletes idempotency records older than IDEMPOTENCY_RETENTION_HOURS, in batches."""
    older_than = timedelta(hours=settings.IDEMPOTENCY_RETENTION_HOURS)
    with job_run("core.idempotency_prune", period=local_now().strftime("%Y-%m-%dT%H")) as run:
        deleted = idempotency_records_prune(older_than=older_than, on_batch=lambda count: run.advance(count))
        run.count(deleted=deleted)
    return deleted


@shared_task(name="core.approvals_expire")
def approvals_expire_stale() -> int:
    """Every 15 minutes: approval requests that waited past their expiry are marked expired (APPROVAL_EXPIRY_HOURS)."""
    with job_run("core.approvals_expire", period=local_now().strftime("%Y-%m-%dT%H:%M")) as run:
        expired = approvals_expire(on_batch=lambda count: run.advance(count))
        run.count(expired=expired)
    return expired


def run_partitions_maintain(echo: IO[str] | None = None) -> dict[str, list[str]]:
    """Creates the next months' partitions of the tables partitioned by month and archives old months
    (PARTITION_MONTHS_AHEAD, PARTITION_ARCHIVE_AFTER_MONTHS), as one job run."""
    with job_run("core.partitions_maintain", period=local_now().date().isoformat(), echo=echo) as run:
        result = partitions_maintain()
        run.count(created=len(result.created), archived=len(result.archived), kept=len(result.kept))
    return {"created": result.created, "archived": result.archived, "kept": result.kept}


@shared_task(name="core.partitions_maintain")
def partitions_maintain_daily() -> dict[str, list[str]]:
    """Daily: the monthly partitions' job (core/partitions.py)."""
    return run_partitions_maintain()
