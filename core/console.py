"""The operators' dashboard (the admin index): sections drawn by the apps, counted within the operator's scope.

`core` cannot import the domain apps, yet the day's payments are the payments app's and the points the rewards app's.
Each app registers its sections here from `AppConfig.ready()` (as the portal tiles do, `core.portal_tiles`); the admin
index asks `dashboard_sections(request)` and renders what comes back, in a stable order.

A section provider receives a `DashboardView`: the request, the operator's scope, the bank chosen with `?bank=`,
today's date in Asia/Shanghai, and `queryset(model)`: the rows of `model` the operator's own admin list shows (the
registered admin's `get_queryset`, so the dashboard counts exactly what the tile's link lists), narrowed to the chosen
bank. A provider costs a fixed number of queries (a few GROUP BY aggregates), whatever the
volume: the index's query count is pinned by a test.

"Approvals waiting" is one tile fed by counters the four-eyes features register (`register_approval_counter`), so a
new approval mechanism registers its own counter and the tile follows.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib import admin
from django.db import models
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from .scoping import OperatorScope, ScopeField, operator_scope, scope_queryset


@dataclass(frozen=True)
class Tile:
    """A headline figure, the list behind it, and an optional line below."""

    title: str
    value: str
    url: str = ""
    note: str = ""
    alert: bool = False


@dataclass(frozen=True)
class Chart:
    """A daily series for the last 30 days: `labels` (dates) and one list of numbers per series, also shown as a
    table beside the chart."""

    key: str
    caption: str
    labels: list[str]
    series: list[tuple[str, list[float]]]

    def rows(self) -> list[tuple[str, list[float]]]:
        return [(label, [values[i] for _name, values in self.series]) for i, label in enumerate(self.labels)]

    def data(self) -> dict[str, Any]:
        return {"labels": self.labels, "series": [{"label": name, "values": values} for name, values in self.series]}


@dataclass(frozen=True)
class Section:
    title: str
    tiles: list[Tile] = field(default_factory=list)
    chart: Chart | None = None
    table_caption: str = ""
    table_head: list[str] = field(default_factory=list)
    table: list[list[str]] = field(default_factory=list)


@dataclass
class DashboardView:
    request: HttpRequest
    scope: OperatorScope
    bank_id: int | None
    site: admin.AdminSite

    @property
    def today(self) -> datetime.date:
        return timezone.now().astimezone(shanghai()).date()

    def day_start(self, day: datetime.date) -> datetime.datetime:
        return datetime.datetime.combine(day, datetime.time.min, tzinfo=shanghai())

    def model_admin(self, model: type[models.Model]) -> admin.ModelAdmin | None:  # type: ignore[type-arg]
        if not self.site.is_registered(model):
            return None
        model_admin = self.site.get_model_admin(model)
        return model_admin if model_admin.has_view_permission(self.request) else None

    def queryset(self, model: type[models.Model]) -> models.QuerySet[Any] | None:
        """What the operator's list of `model` shows, narrowed to the chosen bank; None if they may not see it."""
        model_admin = self.model_admin(model)
        if model_admin is None:
            return None
        queryset = model_admin.get_queryset(self.request)
        scope_field: ScopeField | None = getattr(model_admin, "scope_field", None)
        if self.bank_id is not None and scope_field:
            only = OperatorScope(False, frozenset({self.bank_id}), frozenset())
            queryset = scope_queryset(queryset, only, scope_field, False)
        return queryset

    def url(self, model: type[models.Model], **filters: Any) -> str:
        """The operator's changelist of `model`, filtered (admin lookups as query parameters)."""
        try:
            base = reverse(f"{self.site.name}:{model._meta.app_label}_{model._meta.model_name}_changelist")
        except NoReverseMatch:
            return ""
        return f"{base}?{urlencode(filters)}" if filters else base


def shanghai() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


SectionProvider = Callable[[DashboardView], "Section | None"]
ApprovalCounter = Callable[[DashboardView], "tuple[str, int, str] | None"]

BankChoices = Callable[[OperatorScope], "list[tuple[int, str]]"]

_sections: dict[str, tuple[int, SectionProvider]] = {}
_approval_counters: dict[str, ApprovalCounter] = {}
_bank_choices: list[BankChoices] = []


def register_dashboard_section(key: str, provider: SectionProvider, *, order: int) -> None:
    """Adds (or, under the same key, replaces) a section. Lower `order` first; equal orders by key."""
    _sections[key] = (order, provider)


def register_approval_counter(key: str, counter: ApprovalCounter) -> None:
    """A four-eyes feature's count of requests waiting for a second operator: `(label, count, changelist url)`, or None
    when the operator cannot see them."""
    _approval_counters[key] = counter


def register_bank_choices(provider: BankChoices) -> None:
    """Who knows the member banks (`members`) names them for the dashboard's bank filter."""
    _bank_choices[:] = [provider]


def bank_choices(view: DashboardView) -> list[tuple[int, str]]:
    return [choice for provider in _bank_choices for choice in provider(view.scope)]


def approvals_waiting(view: DashboardView) -> list[tuple[str, int, str]]:
    counts = (counter(view) for _key, counter in sorted(_approval_counters.items()))
    return [count for count in counts if count is not None]


def dashboard_view(request: HttpRequest, site: admin.AdminSite) -> DashboardView:
    scope = operator_scope(request.user)
    bank_id: int | None = None
    raw = request.GET.get("bank", "")
    if raw.isdigit():
        wanted = int(raw)
        if scope.everything or wanted in scope.bank_ids:
            bank_id = wanted
    return DashboardView(request=request, scope=scope, bank_id=bank_id, site=site)


def dashboard_sections(view: DashboardView) -> list[Section]:
    ordered = sorted(_sections.items(), key=lambda item: (item[1][0], item[0]))
    sections = (provider(view) for _key, (_order, provider) in ordered)
    return [section for section in sections if section is not None]


def last_days(view: DashboardView, days: int = 30) -> list[datetime.date]:
    today = view.today
    return [today - datetime.timedelta(days=days - 1 - offset) for offset in range(days)]


def month_periods(view: DashboardView) -> dict[str, tuple[datetime.datetime, datetime.datetime]]:
    """Today, this month so far, and the same stretches one month earlier, as [start, end) in Asia/Shanghai."""
    today = view.today
    now = timezone.now()
    month_start = today.replace(day=1)
    previous_month_start = (month_start - datetime.timedelta(days=1)).replace(day=1)
    previous_day = _same_day_last_month(today)
    elapsed = now - view.day_start(today)
    return {
        "today": (view.day_start(today), now),
        "today_last_month": (view.day_start(previous_day), view.day_start(previous_day) + elapsed),
        "month": (view.day_start(month_start), now),
        "month_last_month": (
            view.day_start(previous_month_start),
            view.day_start(previous_day) + elapsed,
        ),
    }


def _same_day_last_month(day: datetime.date) -> datetime.date:
    first = day.replace(day=1)
    previous = (first - datetime.timedelta(days=1)).replace(day=1)
    last_day = (first - datetime.timedelta(days=1)).day
    return previous.replace(day=min(day.day, last_day))


def change(current: int, previous: int) -> str:
    """ "+12%" against the same period last month; "" with nothing to compare."""
    if not previous:
        return ""
    percent = round((current - previous) * 100 / previous)
    return f"{percent:+d}%"


def approval_requests_waiting(view: DashboardView) -> tuple[str, int, str] | None:
    """The approval queue's requests (`core.approvals`, points adjustments among them) still pending, as the
    operator's list shows them."""
    from .models import ApprovalRequest

    requests = view.queryset(ApprovalRequest)
    if requests is None:
        return None
    status = ApprovalRequest.Status.PENDING
    return _("Approval requests"), requests.filter(status=status).count(), view.url(ApprovalRequest, status=status)


register_approval_counter("core.approvals", approval_requests_waiting)
