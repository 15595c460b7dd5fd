"""A promotion's figures for its merchant: what it gave and cost, and the merchant's captured payments during the
campaign against the same merchant's baseline for the weeks before it.

The campaign runs from `starts_at` to the earlier of now and `ends_at`; its baseline is the N whole weeks before
`starts_at`, N being the campaign's length so far in weeks rounded up (at least 1). Payments are the merchant's
captured ones of the promotion's mode and currency, by the time of capture; volume is captured minus refunded (as
in `reports/summary`). Per-day figures divide by the period's exact length in days. Lift is the campaign's per-day
figure over the baseline's (null when the baseline has none). Cardholder counts are shown only for groups of at
least MIN_COHORT. Every figure is a set-based aggregate: one query for the promotion's uses, one for the payments.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Any

from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Coalesce

from rewards.models import Promotion, PromotionUse

from .api_support import MIN_COHORT
from .models import PaymentIntent
from .windows import captured_between

DAY = dt.timedelta(days=1)
WEEK = dt.timedelta(weeks=1)


def _days(span: dt.timedelta) -> Decimal:
    return Decimal(span // dt.timedelta(microseconds=1)) / Decimal(DAY // dt.timedelta(microseconds=1))


def _per_day(total: int, days: Decimal) -> Decimal | None:
    return Decimal(total) / days if days > 0 else None


def _money_per_day(total: int, days: Decimal) -> int | None:
    value = _per_day(total, days)
    return int(value.to_integral_value(rounding=ROUND_FLOOR)) if value is not None else None


def _ratio(value: Decimal | None, places: int = 4) -> str | None:
    return str(value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)) if value is not None else None


def _cohort(count: int) -> int | None:
    return count if count >= MIN_COHORT else None


def _period(start: dt.datetime, end: dt.datetime, count: int, volume: int, cardholders: int) -> dict[str, Any]:
    days = _days(end - start)
    return {
        "start": int(start.timestamp()),
        "end": int(end.timestamp()),
        "days": _ratio(days),
        "count": count,
        "volume": volume,
        "average_ticket": volume // count if count else 0,
        "count_per_day": _ratio(_per_day(count, days)),
        "volume_per_day": _money_per_day(volume, days),
        "cardholders": _cohort(cardholders),
    }


def _lift(campaign: Decimal | None, baseline: Decimal | None) -> str | None:
    if campaign is None or baseline is None or baseline == 0:
        return None
    return _ratio(campaign / baseline)


def promotion_stats(*, promotion: Promotion, now: dt.datetime) -> dict[str, Any]:
    """The figures described above, for one promotion as of `now`."""
    uses = PromotionUse.objects.filter(promotion=promotion, status=PromotionUse.Status.CONSUMED).aggregate(
        count=Count("pk"),
        discount=Coalesce(Sum("discount"), 0),
        points=Coalesce(Sum("points"), 0),
        cost=Coalesce(Sum("cost"), 0),
        cofunder_cost=Coalesce(Sum("cofunder_cost"), 0),
        returned_cost=Coalesce(Sum("returned_cost"), 0),
        returned_points=Coalesce(Sum("returned_points"), 0),
        cardholders=Count("cardholder", distinct=True),
    )
    start = promotion.starts_at
    end = max(start, min(now, promotion.ends_at))
    weeks = max(1, math.ceil((end - start) / WEEK))
    baseline_start = start - weeks * WEEK
    during = Q(captured_at__gte=start)
    before = Q(captured_at__lt=start)
    net = F("amount_captured") - F("amount_refunded")
    payments = (
        PaymentIntent.objects.filter(
            merchant_id=promotion.merchant_id,
            livemode=promotion.livemode,
            currency=promotion.currency,
            amount_captured__gt=0,
        )
        .filter(captured_between(baseline_start, end))
        .aggregate(
            count=Count("pk", filter=during),
            volume=Coalesce(Sum(net, filter=during), 0),
            cardholders=Count("cardholder", distinct=True, filter=during),
            baseline_count=Count("pk", filter=before),
            baseline_volume=Coalesce(Sum(net, filter=before), 0),
            baseline_cardholders=Count("cardholder", distinct=True, filter=before),
        )
    )
    campaign = _period(start, end, payments["count"], payments["volume"], payments["cardholders"])
    baseline = _period(
        baseline_start,
        start,
        payments["baseline_count"],
        payments["baseline_volume"],
        payments["baseline_cardholders"],
    )
    campaign_days, baseline_days = _days(end - start), _days(start - baseline_start)
    count_lift = _lift(_per_day(payments["count"], campaign_days), _per_day(payments["baseline_count"], baseline_days))
    volume_lift = _lift(
        _per_day(payments["volume"], campaign_days), _per_day(payments["baseline_volume"], baseline_days)
    )
    return {
        "object": "promotion.stats",
        "promotion": promotion.public_id,
        "livemode": promotion.livemode,
        "currency": promotion.currency,
        "min_cohort": MIN_COHORT,
        "uses": promotion.uses,
        "budget": promotion.budget,
        "budget_used": promotion.committed,
        "budget_left": promotion.budget_left,
        "given": {
            "uses": uses["count"],
            "discount": uses["discount"],
            "points": uses["points"],
            "cost": uses["cost"],
            "cofunder_cost": uses["cofunder_cost"],
            "returned_cost": uses["returned_cost"],
            "returned_points": uses["returned_points"],
            "cardholders": _cohort(uses["cardholders"]),
        },
        "campaign": campaign,
        "baseline": {**baseline, "weeks": weeks},
        "lift": {"count": count_lift, "volume": volume_lift},
    }
