"""The revenue share of the demo: terms approved through the approval queue, membership fees, running costs, and a
run for each month of the demo's history to this one, the last closed month with payments restated once. Idempotent:
what exists is kept."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model

from core.approvals import approval_approve
from core.calendar import local_now
from members.models import MemberBank
from payments.models import PaymentIntent

from . import services
from .models import METRICS, AllianceCost, MembershipFee, RevenueSharePolicy, RevenueShareRun

POLICY = {
    "benefits": Decimal("0.15"),
    "active_cardholders": Decimal("0.20"),
    "issuer_volume": Decimal("0.25"),
    "merchants_sponsored": Decimal("0.10"),
    "sponsored_volume": Decimal("0.20"),
    "points_exchanged_in": Decimal("0.10"),
}
COST_POLICY = {
    "active_cardholders": Decimal("0.30"),
    "issuer_volume": Decimal("0.40"),
    "merchants_sponsored": Decimal("0.30"),
}
PROPOSAL = POLICY | {"benefits": Decimal("0.20"), "issuer_volume": Decimal("0.20")}  # more weight on benefits
FEES: dict[str, int] = {
    MemberBank.Kind.STATE_OWNED: 1_200_000,
    MemberBank.Kind.PAYMENT_INSTITUTION: 300_000,
}  # fen a month
DEFAULT_FEE = 600_000
COSTS = (("云主机与数据库 / hosting and databases", 1_200_000), ("清算系统运维 / clearing operations", 650_000))
LATE_COST = ("年度审计分摊（迟到发票）/ audit fee, late invoice", 480_000)


def _months() -> list[dt.date]:
    """From the month of the demo's first live payment (or the month before this one) to this month."""
    this_month = local_now().date().replace(day=1)
    first = (
        PaymentIntent.objects.filter(livemode=True, business_date__isnull=False)
        .order_by("business_date")
        .values_list("business_date", flat=True)
        .first()
    )
    start = min(first.replace(day=1), this_month) if first else services.previous_month()
    months = [start]
    while months[-1] < this_month:
        months.append((months[-1] + dt.timedelta(days=32)).replace(day=1))
    return months


def _approve(model: type[Any], version: Any, maker: Any, checker: Any) -> None:
    """Through the approval queue, as operators do: `maker` submits, `checker` approves."""
    request = services.terms_submit(model=model, version_id=version.pk, actor=maker)
    approval_approve(request_id=request.pk, checker=checker)


def seed_revenue_share(ctx: Any, *, checker: Any) -> None:
    """`checker` is the second alliance operator: maker or checker to "alliance"."""
    alliance = get_user_model().objects.filter(username="alliance").first()
    if alliance is None:
        return
    months = _months()
    weights = {m: POLICY.get(m, Decimal(0)) for m in METRICS}
    cost_weights = {m: COST_POLICY.get(m, Decimal(0)) for m in METRICS}
    if not RevenueSharePolicy.objects.exists():
        policy = services.policy_save(
            policy_id=None,
            weights=weights,
            cost_weights=cost_weights,
            effective_from=months[0].replace(month=1),
            reason="首版分润政策 / the first revenue-share terms",
            actor=checker,
        )
        _approve(RevenueSharePolicy, policy, checker, alliance)
        proposal = services.policy_save(
            policy_id=None,
            weights={m: PROPOSAL.get(m, Decimal(0)) for m in METRICS},
            cost_weights=cost_weights,
            effective_from=(months[-1] + dt.timedelta(days=32)).replace(day=1),
            reason="提高权益贡献权重 / more weight on benefits contributed",
            actor=checker,
        )
        services.terms_submit(model=RevenueSharePolicy, version_id=proposal.pk, actor=checker)  # "alliance" decides
    for bank in MemberBank.objects.order_by("code"):
        if not MembershipFee.objects.filter(bank=bank).exists():
            fee = services.membership_fee_save(
                fee_id=None,
                bank_id=bank.pk,
                amount=FEES.get(bank.kind, DEFAULT_FEE),
                effective_from=months[0].replace(month=1),
                reason="年费按月 / the yearly fee, monthly",
                actor=alliance,
            )
            _approve(MembershipFee, fee, alliance, checker)
    for month in months:
        if not AllianceCost.objects.filter(month=month).exists():
            for description, amount in COSTS:
                AllianceCost.objects.create(month=month, description=description, amount=amount)
    if RevenueShareRun.objects.exists():
        return
    for month in months:
        services.revenue_share_run(month, actor=alliance)
    # The last closed month with payments is restated: a late invoice arrives after its first run.
    closed = [
        month
        for month in months[:-1]
        if PaymentIntent.objects.filter(business_date__year=month.year, business_date__month=month.month).exists()
    ]
    restated = closed[-1] if closed else months[0]
    AllianceCost.objects.create(month=restated, description=LATE_COST[0], amount=LATE_COST[1])
    run = services.revenue_share_run(restated, actor=checker)
    if ctx.out is not None:
        ctx.out.write(
            f"  revenue share: {len(months)} months ({months[0]:%Y-%m} to {months[-1]:%Y-%m}), "
            f"{run.month:%Y-%m} restated as version {run.version}; a policy proposal awaits approval\n"
        )
