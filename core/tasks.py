from __future__ import annotations

import socket
from typing import Any

from celery import shared_task

from .calendar import load_calendar, local_now
from .jobs import job_run


@shared_task(name="core.ping", bind=True)
def ping(self: Any, token: str) -> dict[str, Any]:
    """Answers who ran it: proves a real worker consumed the message (not eager mode)."""
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
