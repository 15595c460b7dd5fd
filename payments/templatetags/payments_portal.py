"""Template filters for the portal's payment pages."""

from __future__ import annotations

from django import template

from core.money import exponent, to_money

register = template.Library()


@register.filter
def minor(amount: int | None, currency: str) -> str:
    """Minor units as the amount, exact, to the currency's own decimals and with thousands separated: `123456|minor:
    "CNY"` is 1,234.56; JPY has none."""
    if amount is None:
        return ""
    return f"{to_money(amount, currency).amount:,.{exponent(currency)}f}"
