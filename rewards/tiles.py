"""The rewards app's tiles on the cardholder's home page (registered from `RewardsConfig.ready`; see
`core.portal_tiles`): the points wallet's worth (one query) and the benefits catalogue (none)."""

from __future__ import annotations

from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from djmoney.money import Money

from core.money import format_minor, to_minor
from core.portal_tiles import Tile
from members.models import Cardholder

from . import selectors


def points_tile(cardholder: Cardholder) -> Tile:
    balances = selectors.cardholder_balances(cardholder_id=cardholder.pk)
    held = [row for row in balances if row.available > 0]
    worth = selectors.wallet_total_cny(balances)
    return Tile(
        title=_("Points"),
        value=format_minor(to_minor(Money(worth, "CNY")), "CNY"),
        url=reverse("rewards_portal:points"),
        note=ngettext("Across %(count)d programme", "Across %(count)d programmes", len(held)) % {"count": len(held)}
        if held
        else _("None yet: your payments earn them"),
    )


def benefits_tile(cardholder: Cardholder) -> Tile:
    return Tile(
        title=_("Benefits"),
        value=_("Lounges, vouchers and more"),
        url=reverse("rewards_portal:benefits"),
        note=_("What your cards entitle you to, at every bank of the alliance"),
    )
