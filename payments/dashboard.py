"""The payments app's sections of the operators' dashboard (`core.console`): the day's and month's payments against
last month, a 30-day series, settlement and payouts waiting, open exceptions, and channel health."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils.translation import gettext as _

from core.console import (
    Chart,
    DashboardView,
    Section,
    Tile,
    change,
    last_days,
    month_periods,
    register_dashboard_section,
    shanghai,
)
from core.jobs import register_job
from core.money import format_minor

from .models import Channel, Dispute, PaymentIntent, Payout, ReconciliationException, RiskReview, SettlementBatch
from .selectors import channel_figures

CURRENCY = "CNY"  # the alliance's currency; other currencies' payments are in the lists, not the headline figures


def payments_section(view: DashboardView) -> Section | None:
    payments = view.queryset(PaymentIntent)
    if payments is None:
        return None
    periods = month_periods(view)
    succeeded = payments.filter(status=PaymentIntent.Status.SUCCEEDED, currency=CURRENCY)
    earliest = min(start for start, _end in periods.values())
    aggregates: dict[str, Any] = {}
    for name, (start, end) in periods.items():
        window = Q(created_at__gte=start, created_at__lt=end)
        aggregates[f"{name}_count"] = Count("pk", filter=window)
        aggregates[f"{name}_amount"] = Sum("amount", filter=window, default=0)
    figures = succeeded.filter(created_at__gte=earliest).aggregate(**aggregates)

    days = last_days(view)
    daily = {
        row["day"]: row
        for row in succeeded.filter(created_at__gte=view.day_start(days[0]))
        .annotate(day=TruncDate("created_at", tzinfo=shanghai()))
        .values("day")
        .annotate(count=Count("pk"), amount=Sum("amount"))
        .order_by()
    }
    today = view.today
    list_today = view.url(PaymentIntent, status="succeeded", created_at__gte=str(today))
    list_month = view.url(PaymentIntent, status="succeeded", created_at__gte=str(today.replace(day=1)))
    tiles = [
        Tile(
            _("Payments today"),
            format_minor(figures["today_amount"], CURRENCY),
            list_today,
            _("%(count)d payments; %(change)s against the same day last month")
            % {
                "count": figures["today_count"],
                "change": change(figures["today_amount"], figures["today_last_month_amount"]) or "—",
            },
        ),
        Tile(
            _("Payments this month"),
            format_minor(figures["month_amount"], CURRENCY),
            list_month,
            _("%(count)d payments; %(change)s against last month to this day")
            % {
                "count": figures["month_count"],
                "change": change(figures["month_amount"], figures["month_last_month_amount"]) or "—",
            },
        ),
        Tile(
            _("Same period last month"),
            format_minor(figures["month_last_month_amount"], CURRENCY),
            "",
            _("%(count)d payments") % {"count": figures["month_last_month_count"]},
        ),
    ]
    chart = Chart(
        key="console-payments",
        caption=_("Succeeded payments per day, last 30 days (count, and volume in CNY)"),
        labels=[day.isoformat() for day in days],
        series=[
            (_("payments"), [daily[day]["count"] if day in daily else 0 for day in days]),
            (_("volume (CNY)"), [_yuan(daily[day]["amount"]) if day in daily else 0 for day in days]),
        ],
    )
    return Section(_("Payments"), tiles, chart)


def _yuan(minor: int | None) -> float:
    # Chart coordinates only: the table and tiles show exact amounts through format_minor.
    return round((minor or 0) / 100, 2)


def settlement_section(view: DashboardView) -> Section | None:
    batches = view.queryset(SettlementBatch)
    payouts = view.queryset(Payout)
    if batches is None and payouts is None:
        return None
    tiles: list[Tile] = []
    if batches is not None:
        waiting = (SettlementBatch.Status.SETTLED, SettlementBatch.Status.HELD)
        counts = batches.aggregate(
            waiting=Count("pk", filter=Q(status__in=waiting)),
            returned=Count("pk", filter=Q(status=SettlementBatch.Status.RETURNED)),
        )
        tiles.append(
            Tile(
                _("Settlement batches to pay or held"),
                str(counts["waiting"]),
                view.url(SettlementBatch, status__in=",".join(waiting)),
            )
        )
        tiles.append(
            Tile(
                _("Batches with a returned payout"),
                str(counts["returned"]),
                view.url(SettlementBatch, status=SettlementBatch.Status.RETURNED),
                alert=bool(counts["returned"]),
            )
        )
    if payouts is not None:
        open_states = (Payout.Status.PENDING_APPROVAL, Payout.Status.READY, Payout.Status.SENT)
        counts = payouts.aggregate(
            waiting=Count("pk", filter=Q(status__in=open_states)),
            waiting_amount=Sum("amount", filter=Q(status__in=open_states, currency=CURRENCY), default=0),
            returned=Count("pk", filter=Q(status=Payout.Status.RETURNED)),
        )
        tiles.append(
            Tile(
                _("Payouts waiting"),
                str(counts["waiting"]),
                view.url(Payout, status__in=",".join(open_states)),
                format_minor(counts["waiting_amount"], CURRENCY),
            )
        )
        tiles.append(
            Tile(
                _("Payouts returned"),
                str(counts["returned"]),
                view.url(Payout, status=Payout.Status.RETURNED),
                alert=bool(counts["returned"]),
            )
        )
    return Section(_("Settlement and payouts"), tiles)


def exceptions_section(view: DashboardView) -> Section | None:
    tiles: list[Tile] = []
    reviews = view.queryset(RiskReview)
    if reviews is not None:
        count = reviews.count()
        tiles.append(Tile(_("Payments in risk review"), str(count), view.url(RiskReview), alert=bool(count)))
    exceptions = view.queryset(ReconciliationException)
    if exceptions is not None:
        count = exceptions.filter(status__in=ReconciliationException.OPEN_STATUSES).count()
        url = view.url(ReconciliationException, status__in=",".join(ReconciliationException.OPEN_STATUSES))
        tiles.append(Tile(_("Reconciliation exceptions open"), str(count), url, alert=bool(count)))
    disputes = view.queryset(Dispute)
    if disputes is not None:
        count = disputes.filter(status__in=Dispute.OPEN_STATUSES).count()
        url = view.url(Dispute, status__in=",".join(Dispute.OPEN_STATUSES))
        tiles.append(Tile(_("Disputes open"), str(count), url, alert=bool(count)))
    return Section(_("Open exceptions"), tiles) if tiles else None


def channels_section(view: DashboardView) -> Section | None:
    channels = view.queryset(Channel)
    if channels is None:
        return None
    visible = set(channels.values_list("code", flat=True))
    figures = [figure for figure in channel_figures() if figure.code in visible]
    if not figures:
        return None
    open_breakers = sum(1 for figure in figures if figure.breaker != "closed")
    tiles = [
        Tile(
            _("Channels with the breaker not closed"),
            str(open_breakers),
            view.url(Channel),
            _("of %(count)d channels") % {"count": len(figures)},
            alert=bool(open_breakers),
        )
    ]
    table = [
        [
            figure.code,
            str(figure.volume),
            "—" if figure.success_rate is None else f"{figure.success_rate:.1%}",
            "—" if figure.latency_p95_ms is None else str(figure.latency_p95_ms),
            figure.breaker,
        ]
        for figure in figures
    ]
    return Section(
        _("Channel health"),
        tiles,
        table_caption=_("Attempts in the last 24 hours"),
        table_head=[_("channel"), _("attempts"), _("success rate"), _("p95 latency (ms)"), _("breaker")],
        table=table,
    )


def register() -> None:
    for job in (
        "payments.attempts_resolve",
        "payments.authorizations_expire",
        "payments.risk_reviews_expire",
        "payments.orphans_sweep",
        "payments.payouts_send",
        "payments.payouts_poll",
        "payments.reconcile",
        "payments.disputes_expire",
        "payments.disputes_poll",
    ):
        register_job(job, task=job)
    register_job("settlement.t1", task="payments.settlement_t1")
    register_job("settlement.t0", task="payments.settlement_t0")
    register_job("payments.channels_probe", shared=False, task="payments.channels_probe")
    register_dashboard_section("payments.payments", payments_section, order=10)
    register_dashboard_section("payments.exceptions", exceptions_section, order=40)
    register_dashboard_section("payments.settlement", settlement_section, order=50)
    register_dashboard_section("payments.channels", channels_section, order=70)
