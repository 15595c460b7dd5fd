"""The cardholder portal as a whole: a cardholder with something on every page, and the table of the portal's pages.

Tests that walk the whole portal (English pages, times, the browser suite in tests/browser/) read `PAGES`: a page added
to the portal is one line here. Each line names the page (its screenshot's file name), builds its address for the
cardholder `portal_holder()` made, and says what its first heading reads in the page's language.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext

from members.models import ConsentEvent
from members.services import consent_grant, consent_text_publish
from rewards import services as rewards_services
from tests.factories import (
    CardFactory,
    CardProductFactory,
    MemberBankFactory,
    PointsProgramFactory,
    make_benefit,
    make_cardholder,
    make_exchange_policy,
)

HOLDER_NAME = "Li Ming"  # a name with no other form: the pages show it as it is
# A consent given at 16:30 UTC on 1 March is 00:30 on 2 March in Asia/Shanghai, the time every page shows.
CONSENT_AT = dt.datetime(2026, 3, 1, 16, 30, tzinfo=dt.UTC)
CONSENT_AT_SHOWN = "2026-03-02 00:30"


@dataclass(frozen=True)
class PortalHolder:
    holder: Any
    username: str
    cards: list[Any]
    programs: list[Any]
    benefit: Any


def portal_holder(*, password_user: str = "li.ming") -> PortalHolder:
    """A cardholder with cards at two member banks, points in both programmes, a benefit to redeem with the first's
    points, the exchange policy in force, and a consent given at `CONSENT_AT`. Every bank, programme, product and
    benefit has both a Chinese and an English name, as the demo's do."""
    holder = make_cardholder(username=password_user, display_name=HOLDER_NAME)
    banks = [
        MemberBankFactory(name_zh="华信测试银行", name_en="Huaxin Test Bank"),
        MemberBankFactory(name_zh="江海测试银行", name_en="Jianghai Test Bank"),
    ]
    programs = [
        PointsProgramFactory(bank=banks[0], name="华信积分", name_en="Huaxin Points", point_value_cny=Decimal("0.004")),
        PointsProgramFactory(
            bank=banks[1], name="江海积分", name_en="Jianghai Points", point_value_cny=Decimal("0.005")
        ),
    ]
    products = [
        CardProductFactory(bank=banks[0], name="华信金卡", name_en="Huaxin Gold Card", tier="gold"),
        CardProductFactory(bank=banks[1], name="江海白金卡", name_en="Jianghai Platinum Card", tier="platinum"),
    ]
    cards = [CardFactory(cardholder=holder, product=product) for product in products]
    rewards_services.points_earn(cardholder_id=holder.pk, program=programs[0], amount=20_000, idempotency_key="pp-a")
    rewards_services.points_earn(cardholder_id=holder.pk, program=programs[1], amount=5_000, idempotency_key="pp-b")
    make_exchange_policy(effective_from=timezone.now() - dt.timedelta(days=1))
    benefit = make_benefit(
        bank=banks[0],
        price_program=programs[0],
        price_points=1_000,
        title_zh="机场贵宾厅",
        title_en="Airport lounge visit",
        description_zh="一次机场贵宾厅服务。",
        description_en="One airport lounge visit.",
        terms_zh="提前一天预约。",
        terms_en="Book a day ahead.",
    )
    consent_text_publish(
        purpose="share_holdings", text_zh="我同意共享持卡信息。", text_en="I agree to share my holdings."
    )
    consent_grant(cardholder=holder, purpose="share_holdings")
    ConsentEvent.objects.filter(cardholder=holder).update(at=CONSENT_AT)
    return PortalHolder(holder=holder, username=password_user, cards=cards, programs=programs, benefit=benefit)


def _says(message: str, **values: Any) -> Callable[[PortalHolder], str]:
    """A heading made of a message in the active language."""

    def heading(_: PortalHolder) -> str:
        text = gettext(message)
        return text % values if values else text

    return heading


@dataclass(frozen=True)
class PortalPage:
    name: str
    url: Callable[[PortalHolder], str]
    heading: Callable[[PortalHolder], str]


def _page(
    name: str,
    url_name: str,
    heading: Callable[[PortalHolder], str],
    args: Callable[[PortalHolder], list[Any]] | None = None,
) -> PortalPage:
    return PortalPage(name, lambda p: reverse(url_name, args=args(p) if args else None), heading)


def _card_heading(p: PortalHolder) -> str:
    return f"{p.cards[0].product.local_name} •••• {p.cards[0].last4}"


def _statement_heading(p: PortalHolder) -> str:
    program = p.programs[0]
    return f"{program.local_name} {program.bank.code} · {program.unit_code}"


PAGES: tuple[PortalPage, ...] = (
    _page("dashboard", "members:dashboard", _says("Hello, %(name)s", name=HOLDER_NAME)),
    _page("card", "members:card_detail", _card_heading, args=lambda p: [p.cards[0].pk]),
    _page("points", "rewards_portal:points", _says("My points")),
    _page("points-statement", "rewards_portal:statement", _statement_heading, args=lambda p: [p.programs[0].pk]),
    _page("exchange", "rewards_portal:exchange", _says("Exchange points")),
    _page("benefits", "rewards_portal:benefits", _says("Benefits")),
    _page("benefit", "rewards_portal:benefit", lambda p: p.benefit.title, args=lambda p: [p.benefit.pk]),
    _page("vouchers", "rewards_portal:vouchers", _says("My vouchers")),
    _page("offers", "rewards_portal:offers", _says("Offers")),
    _page("pay-code", "payments:pay_code", _says("Pay with a code")),
    _page("agreements", "payments:agreements", _says("Agreements")),
    _page("bind-card", "members:card_bind", _says("Bind a card")),
    _page("link-account", "members:account_link", _says("Link an account")),
    _page("consents", "members:consents", _says("Privacy choices")),
    _page("best-card", "alliance_portal:best_card", _says("Find my best card")),
)
