"""Template tags for the portal's benefit pages, and the card privileges block that a card's page (members) shows:
members cannot import rewards, so its template loads this library and the block is fed by the rewards selector."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import template
from django.utils.dates import WEEKDAYS_ABBR
from django.utils.translation import get_language, gettext
from django.utils.translation import gettext_lazy as _

from core.money import MINOR_UNIT_EXPONENT
from members.models import BindingStatus, Card

from .. import selectors, services
from ..models import Benefit, Promotion

register = template.Library()


@register.filter
def cny_units(units: int | None) -> str:
    """CNY ten-thousandths as yuan to the fen when exact, else to the ten-thousandth (no rounding)."""
    if units is None:
        return ""
    value = services.units_cny(units)
    return f"{value.quantize(Decimal('0.01') if value == value.quantize(Decimal('0.01')) else Decimal('0.0001')):f}"


@register.filter
def localised(benefit: Benefit, field: str) -> str:
    """A benefit's text in the page's language: `benefit|localised:"terms"` is `terms_zh` or `terms_en`."""
    language = "zh" if (get_language() or "").startswith("zh") else "en"  # as `Benefit.title` picks it
    return str(getattr(benefit, f"{field}_{language}"))


@register.inclusion_tag("rewards/_card_privileges.html")
def card_privileges(card: Card) -> dict[str, Any]:
    """The free benefits on offer that this card is eligible for, each linked to its page (redeemed there)."""
    return {"privileges": selectors.card_privileges(card=card) if card.status == BindingStatus.ACTIVE else []}


# --- promotions, described for the offers page -----------------------------------------------------------------------

METHOD_LABELS = {
    "card": _("card"),
    "payment_code": _("payment code"),
    "agreement": _("in-app payment"),
    "balance": _("bank or wallet balance"),
}


def _money(amount: int | None, currency: str) -> str:
    """Minor units as the amount a shopper reads: "¥10", "¥9.90", "HKD 12.50", "JPY 500"."""
    if amount is None:
        return ""
    places = MINOR_UNIT_EXPONENT.get(currency, 2)
    value = Decimal(amount).scaleb(-places)
    text = f"{value:,.0f}" if value == value.to_integral_value() else f"{value:,.{places}f}"
    return f"¥{text}" if currency == "CNY" else f"{currency} {text}"


def _number(value: Decimal) -> str:
    return f"{value.normalize():f}"


def _ordinal(n: int) -> str:
    """3rd in English; 3 in Chinese, where 第 comes from the sentence."""
    if (get_language() or "").startswith("zh"):
        return str(n)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@register.filter
def promotion_benefit(promotion: Promotion) -> str:
    """What the promotion gives, in a line in the page's language: "¥10 off orders of ¥100", "2× points"."""
    kind, currency = promotion.kind, promotion.currency
    Kind = Promotion.Kind
    if kind == Kind.AMOUNT_OFF:
        off = _money(promotion.amount_off, currency)
        if promotion.min_spend:
            return gettext("%(off)s off orders of %(min)s") % {"off": off, "min": _money(promotion.min_spend, currency)}
        return gettext("%(off)s off") % {"off": off}
    if kind == Kind.PERCENT_OFF:
        percent = promotion.percent_off or Decimal(0)
        # Translators: "zhe" is the share paid in tenths, as in 8折 (20% off) or 5折 (half price).
        values = {"percent": _number(percent), "zhe": _number((100 - percent) / 10)}
        if promotion.max_discount:
            values["cap"] = _money(promotion.max_discount, currency)
            return gettext("%(percent)s%% off, up to %(cap)s") % values
        return gettext("%(percent)s%% off") % values
    if kind == Kind.POINTS_MULTIPLIER:
        return gettext("%(times)s× points") % {"times": _number(promotion.multiplier or Decimal(1))}
    if kind == Kind.RANDOM_OFF:
        return gettext("A random %(low)s–%(high)s off") % {
            "low": _money(promotion.random_min, currency),
            "high": _money(promotion.random_max, currency),
        }
    if kind == Kind.CASHBACK_POINTS:
        rate = (promotion.cashback_rate or Decimal(0)) * 100
        return gettext("%(percent)s%% back as points") % {"percent": _number(rate)}
    if kind == Kind.FREQUENCY_REWARD:
        count = promotion.frequency_count or 0
        voucher = promotion.reward_benefit.title if promotion.reward_benefit is not None else gettext("a voucher")
        return gettext("Every %(nth)s payment in a month earns %(voucher)s") % {
            "nth": _ordinal(count),
            "count": count,
            "voucher": voucher,
        }
    return str(promotion.get_kind_display())


@register.filter
def promotion_conditions(promotion: Promotion) -> list[str]:
    """Its conditions, one line each: minimum spend, weekdays, hours, stores, first purchase, methods, limits."""
    lines: list[str] = []
    if promotion.min_spend and promotion.kind != Promotion.Kind.AMOUNT_OFF:  # 满减 says it already
        lines.append(gettext("Minimum spend %(min)s") % {"min": _money(promotion.min_spend, promotion.currency)})
    if promotion.weekdays:
        days = ", ".join(str(WEEKDAYS_ABBR[int(day) - 1]) for day in sorted(promotion.weekdays) if 1 <= int(day) <= 7)
        lines.append(gettext("On %(days)s") % {"days": days})
    if promotion.hour_from is not None or promotion.hour_to is not None:
        start, end = promotion.hour_from or 0, 24 if promotion.hour_to is None else promotion.hour_to
        lines.append(gettext("From %(start)02d:00 to %(end)02d:00") % {"start": start, "end": end})
    stores = list(promotion.stores.all())
    if stores:
        lines.append(gettext("At %(stores)s") % {"stores": ", ".join(store.name for store in stores)})
    if promotion.categories:
        lines.append(gettext("On %(categories)s purchases") % {"categories": ", ".join(promotion.categories)})
    if promotion.first_purchase:
        lines.append(gettext("Your first payment at this merchant only"))
    if promotion.methods:
        methods = ", ".join(str(METHOD_LABELS.get(method, method)) for method in promotion.methods)
        lines.append(gettext("Paying by %(methods)s") % {"methods": methods})
    if promotion.per_cardholder_daily:
        lines.append(gettext("Up to %(count)d times a day per person") % {"count": promotion.per_cardholder_daily})
    if promotion.per_cardholder:
        lines.append(gettext("Up to %(count)d times per person") % {"count": promotion.per_cardholder})
    return lines
