"""Alliance jobs: each takes nothing, runs one service inside a recorded job run."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from core.calendar import local_now
from core.jobs import job_run

from . import services

# --- clearing --------------------------------------------------------------------------------------------------------


@shared_task(name="alliance.clearing_daily")
def clearing_daily() -> dict[str, Any]:
    """Clears every day due (each its own job run, `alliance.clearing`), then sends the instructions."""
    report = services.clearing_daily()
    return report.counts()


@shared_task(name="alliance.clearing_poll")
def clearing_poll() -> dict[str, int]:
    """Sends pending instructions and asks about sent ones: confirmed, failed, or sent again under the reference."""
    with job_run("alliance.clearing_poll", period=local_now().strftime("%Y-%m-%dT%H:%M")) as run:
        sent = services.instructions_send()
        polled = services.instructions_poll()
        counts = {**sent.counts(), **{f"poll_{name}": n for name, n in polled.counts().items()}}
        run.count(**counts)
    return counts


# --- end of clearing -------------------------------------------------------------------------------------------------

# --- revenue share -------------------------------------------------------------------------------------------------


@shared_task(name="alliance.revenue_share_monthly")
def revenue_share_monthly() -> dict[str, object]:
    """The previous month's revenue share (beat: the 3rd of each month, 03:00 Asia/Shanghai): its first version, or
    the same version again when nothing changed since."""
    run = services.revenue_share_run(services.previous_month())
    return {"month": f"{run.month:%Y-%m}", "version": run.version, "pool": run.pool}


# --- segments --------------------------------------------------------------------------------------------------------


@shared_task(name="alliance.segments_nightly")
def segments_nightly() -> dict[str, int]:
    """Derives consenting cardholders' segment tags from their payments (beat: every night, 02:15 Asia/Shanghai)."""
    return services.segments_compute().counts()
