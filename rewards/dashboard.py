"""The rewards app's sections of the operators' dashboard (`core.console`): points issued, redeemed, exchanged and
expired this month, benefits redeemed and the most popular, promotion spend against budget, and the points
adjustments waiting for a second operator."""

from __future__ import annotations

from django.db.models import Count, Q, Sum
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from core.console import DashboardView, Section, Tile, register_dashboard_section
from core.jobs import register_job
from core.money import format_minor

from .models import LedgerTransaction, Promotion, Voucher

Kind = LedgerTransaction.Kind
POINT_FIGURES = (
    ("issued", (Kind.EARN, Kind.EARN_BATCH)),
    ("redeemed", (Kind.SPEND, Kind.HOLD_POST)),
    ("exchanged", (Kind.EXCHANGE,)),
    ("expired", (Kind.EXPIRE,)),
)


def points_section(view: DashboardView) -> Section | None:
    transactions = view.queryset(LedgerTransaction)
    if transactions is None:
        return None
    month_start = view.today.replace(day=1)
    totals = transactions.filter(created_at__gte=view.day_start(month_start)).aggregate(
        **{name: Sum("points", filter=Q(kind__in=kinds), default=0) for name, kinds in POINT_FIGURES}
    )
    titles = {
        "issued": _("Points issued this month"),
        "redeemed": _("Points redeemed this month"),
        "exchanged": _("Points exchanged this month"),
        "expired": _("Points expired this month"),
    }
    tiles = [
        Tile(
            titles[name],
            f"{totals[name]:,}",
            view.url(LedgerTransaction, kind__in=",".join(kinds), created_at__gte=str(month_start)),
        )
        for name, kinds in POINT_FIGURES
    ]
    return Section(_("Points"), tiles)


def benefits_section(view: DashboardView) -> Section | None:
    vouchers = view.queryset(Voucher)
    if vouchers is None:
        return None
    month_start = view.today.replace(day=1)
    redeemed = vouchers.filter(state=Voucher.State.REDEEMED, redeemed_at__gte=view.day_start(month_start))
    title_field = "benefit__title_zh" if (get_language() or "").startswith("zh") else "benefit__title_en"
    popular = list(
        redeemed.values("benefit_id", title_field).annotate(count=Count("pk")).order_by("-count", "benefit_id")[:5]
    )
    titles = {row["benefit_id"]: row[title_field] for row in popular}
    total = redeemed.count()
    tiles = [
        Tile(
            _("Benefits redeemed this month"),
            str(total),
            view.url(Voucher, state=Voucher.State.REDEEMED, redeemed_at__gte=str(month_start)),
            _("most popular: %(title)s") % {"title": titles.get(popular[0]["benefit_id"], "")} if popular else "",
        )
    ]
    table = [[titles.get(row["benefit_id"], ""), str(row["count"])] for row in popular]
    section = Section(
        _("Benefits"),
        tiles,
        table_caption=_("Most redeemed this month"),
        table_head=[_("benefit"), _("redeemed")],
        table=table,
    )
    return section


def promotions_section(view: DashboardView) -> Section | None:
    promotions = view.queryset(Promotion)
    if promotions is None:
        return None
    active = promotions.filter(status=Promotion.Status.ACTIVE, currency="CNY").aggregate(
        count=Count("pk"), budget=Sum("budget", default=0), committed=Sum("committed", default=0)
    )
    share = f"{active['committed'] / active['budget']:.0%}" if active["budget"] else "—"
    tiles = [
        Tile(
            _("Active promotions: spend against budget"),
            share,
            view.url(Promotion, status=Promotion.Status.ACTIVE),
            _("%(committed)s of %(budget)s over %(count)d promotions")
            % {
                "committed": format_minor(active["committed"], "CNY"),
                "budget": format_minor(active["budget"], "CNY"),
                "count": active["count"],
            },
        )
    ]
    return Section(_("Promotions"), tiles)


def register() -> None:
    for job in ("rewards.lots_expire", "rewards.holds_expire", "rewards.vouchers_expire", "rewards.ledger_seal"):
        register_job(job, task=job)
    register_dashboard_section("rewards.points", points_section, order=20)
    register_dashboard_section("rewards.benefits", benefits_section, order=25)
    register_dashboard_section("rewards.promotions", promotions_section, order=30)
