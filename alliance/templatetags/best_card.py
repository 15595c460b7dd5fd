"""Figures on the best card page: each rounded once, to the fen, where it is shown (`core.money`)."""

from __future__ import annotations

from decimal import Decimal

from django import template

from core.money import quantize

register = template.Library()


@register.filter
def fen(value: Decimal | int | None) -> str:
    """An exact CNY amount as yuan to the fen, with thousands separated: 1234.565 → "1,234.56" (half to even)."""
    if value is None:
        return ""
    return f"{quantize(Decimal(value), 2):,.2f}"


@register.filter
def rate(value: Decimal) -> str:
    """A rate as given, without trailing zeros: 2.000 → "2", 0.0150 → "0.015"."""
    normalized = Decimal(value).normalize()
    return f"{normalized:f}" if normalized else "0"


@register.filter
def percent(value: Decimal) -> str:
    """A fraction as a percentage without trailing zeros: 0.015 → "1.5%"."""
    return f"{rate(Decimal(value) * 100)}%"


@register.filter
def whole(value: int) -> str:
    """Whole points with thousands separated: 135999 → "135,999"."""
    return f"{value:,}"
