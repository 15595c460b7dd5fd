"""The payments app's tile on the cardholder's home page (registered from `PaymentsConfig.ready`; see
`core.portal_tiles`): this month's spending, leading to the spending page. One aggregate query."""

from __future__ import annotations

from django.urls import reverse
from django.utils.translation import gettext as _

from core.money import format_minor
from core.portal_tiles import Tile
from members.models import Cardholder

from .spending import spent_this_month


def spending_tile(cardholder: Cardholder) -> Tile:
    totals = spent_this_month(cardholder)
    value = " · ".join(format_minor(amount, currency) for currency, amount in totals.items())
    return Tile(
        title=_("This month's spending"),
        value=value or format_minor(0, "CNY"),
        url=reverse("payments:spending"),
        note=_("By category and by bank, month by month"),
    )
