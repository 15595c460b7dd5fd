"""Template tags for the portal's benefit pages, and the card privileges block that a card's page (members) shows:
members cannot import rewards, so its template loads this library and the block is fed by the rewards selector."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import template
from django.utils.translation import get_language

from members.models import BindingStatus, Card

from .. import selectors, services
from ..models import Benefit

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
