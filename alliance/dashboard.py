"""The alliance app's sections of the operators' dashboard (`core.console`): the latest clearing position. Revenue-share
terms waiting for a second operator are counted with every approval request, by the approval queue's counter."""

from __future__ import annotations

from django.utils.translation import gettext as _

from core.console import DashboardView, Section, Tile, register_dashboard_section
from core.jobs import register_job
from core.money import format_minor

from .models import ClearingPosition
from .services.revenue_share import JOB as REVENUE_SHARE_JOB


def clearing_section(view: DashboardView) -> Section | None:
    positions = view.queryset(ClearingPosition)
    if positions is None:
        return None
    latest = positions.order_by("-run__business_day").values_list("run__business_day", flat=True).first()
    if latest is None:
        return Section(_("Clearing"), [Tile(_("Clearing position"), "—", view.url(ClearingPosition), _("no run yet"))])
    rows = list(
        positions.filter(run__business_day=latest).select_related("run", "bank").order_by("run__currency", "party_code")
    )
    today = latest == view.today
    title = _("Clearing position today") if today else _("Latest clearing position")
    tiles = [
        Tile(
            f"{title} · {row.party_code}",
            format_minor(row.net_minor, row.run.currency),
            view.url(ClearingPosition, run__business_day=str(latest)),
            _("net to receive (negative: to pay), %(day)s, %(status)s")
            % {"day": latest.isoformat(), "status": row.run.get_status_display()},
        )
        for row in rows[:12]
    ]
    return Section(_("Clearing"), tiles)


def register() -> None:
    register_job("alliance.clearing", task="alliance.clearing_daily")
    register_job("alliance.clearing_poll", task="alliance.clearing_poll")
    register_job(REVENUE_SHARE_JOB, task="alliance.revenue_share_monthly")
    register_dashboard_section("alliance.clearing", clearing_section, order=60)
