"""The alliance's jobs: each takes ids or nothing and calls one service inside a recorded job run."""

from __future__ import annotations

from celery import shared_task

from . import services

# --- revenue share -------------------------------------------------------------------------------------------------


@shared_task(name="alliance.revenue_share_monthly")
def revenue_share_monthly() -> dict[str, object]:
    """The previous month's revenue share (beat: the 3rd of each month, 03:00 Asia/Shanghai): its first version, or
    the same version again when nothing changed since."""
    run = services.revenue_share_run(services.previous_month())
    return {"month": f"{run.month:%Y-%m}", "version": run.version, "pool": run.pool}
