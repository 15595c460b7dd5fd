"""The points statement names what is behind each movement: a payment's merchant for its points earned, paid with
or reversed, a redemption's benefit, an exchange's other programme, and for an adjustment or a campaign its kind."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from core.approvals import approval_approve
from payments import services
from rewards import selectors as rewards_selectors
from rewards import services as ledger
from tests.factories import (
    PASSWORD,
    CardFactory,
    CardProductFactory,
    ChannelFactory,
    MemberBankFactory,
    MerchantFactory,
    PointsProgramFactory,
    StaffFactory,
    bank_operator,
    make_benefit,
    make_cardholder,
)

pytestmark = pytest.mark.django_db


def test_each_movement_names_its_merchant_benefit_or_programme(channel_fake: Any) -> None:
    huaxin, jianghai = MemberBankFactory(), MemberBankFactory()
    points = PointsProgramFactory(
        bank=huaxin, name="华信积分", name_en="Huaxin Points", point_value_cny=Decimal("0.01")
    )
    other = PointsProgramFactory(bank=jianghai, name="江海积分", name_en="Jianghai Points")
    holder = make_cardholder()
    card = CardFactory(cardholder=holder, product=CardProductFactory(bank=huaxin, earning_rates={"dining": "2"}))
    noodles = MerchantFactory(display_name="Noodle House", spend_category="dining")
    ChannelFactory(acquirer=noodles.sponsor_bank)
    ledger.points_earn(
        cardholder_id=holder.pk, program=points, amount=5_000, idempotency_key="campaign-1",
        source=ledger.EarnSource.CAMPAIGN,
    )  # fmt: skip
    dinner = services.payment_create(
        merchant=noodles, cardholder=holder, card=card, amount=10_000, currency="CNY", idempotency_key="dinner",
        confirm=True,
    )  # fmt: skip
    services.refund_create(merchant=noodles, payment_id=dinner.public_id, amount=2_500, idempotency_key="dinner-r")
    lunch = services.payment_create(
        merchant=noodles, cardholder=holder, card=card, amount=5_000, currency="CNY", idempotency_key="lunch",
        confirm=True, use_points=1_000,
    )  # fmt: skip
    assert (lunch.status, lunch.points_used) == ("succeeded", 1_000)
    lounge = make_benefit(
        bank=huaxin, price_program=points, price_points=300, title_zh="贵宾厅", title_en="Lounge visit"
    )
    ledger.benefit_redeem(
        cardholder_id=holder.pk, card_id=card.pk, benefit_id=lounge.pk, points={points.pk: 300}, idempotency_key="l1"
    )
    ledger.points_exchange(
        cardholder_id=holder.pk, from_program=points, to_program=other, amount=1_000, idempotency_key="x1"
    )
    request = ledger.adjustment_request(
        cardholder_id=holder.pk, program=points, amount=7, reason="goodwill", requested_by=StaffFactory()
    )
    approval_approve(request_id=request.pk, checker=bank_operator(points.bank))

    client = Client()
    assert client.login(username=holder.user.username, password=PASSWORD)
    page = client.get(reverse("rewards_portal:statement", args=[points.pk]), HTTP_ACCEPT_LANGUAGE="en")
    assert page.status_code == 200
    named = [(line.kind, line.amount, line.source) for line in reversed(page.context["page"].lines)]
    assert named == [
        ("earn", 5_000, "Campaign bonus"),
        ("earn", 200, "Noodle House"),  # 100.00 of dining at 2 points per yuan
        ("reversal", -50, "Noodle House"),  # a quarter refunded
        ("earn", 80, "Noodle House"),  # 40.00 paid in cash
        ("hold_post", -1_000, "Noodle House"),  # the points the lunch was paid with
        ("spend", -300, "Lounge visit"),
        ("exchange", -1_000, "Jianghai Points"),
        ("adjust", 7, ""),  # an adjustment: its kind says it all
    ]
    html = page.content.decode()
    assert f'<a href="{reverse("payments:statement_payment", args=[dinner.public_id])}">Noodle House</a>' in html
    assert "Lounge visit" in html
    assert "Jianghai Points" in html
    other_side = client.get(reverse("rewards_portal:statement", args=[other.pk]), HTTP_ACCEPT_LANGUAGE="en")
    assert [(line.kind, line.source) for line in other_side.context["page"].lines] == [("exchange", "Huaxin Points")]
    chinese = client.get(reverse("rewards_portal:statement", args=[other.pk]))
    assert "华信积分" in chinese.content.decode()


def test_without_payments_installed_a_payment_is_named_by_its_id(channel_fake: Any) -> None:
    bank = MemberBankFactory()
    program = PointsProgramFactory(bank=bank)
    card = CardFactory(product=CardProductFactory(bank=bank))
    merchant = MerchantFactory(display_name="Noodle House")
    ChannelFactory(acquirer=merchant.sponsor_bank)
    paid = services.payment_create(
        merchant=merchant, cardholder=card.cardholder, card=card, amount=1_000, currency="CNY", idempotency_key="k",
        confirm=True,
    )  # fmt: skip
    wallet = rewards_selectors.cardholder_wallet(cardholder_id=card.cardholder_id, program_id=program.pk)
    assert wallet is not None
    page = rewards_selectors.account_statement(account_id=wallet.pk, newest_first=True)
    from payments.cardholder_statement import merchant_names_of_payments

    try:
        rewards_selectors.register_payment_merchant_names(None)
        alone = rewards_selectors.name_sources(page, program_id=program.pk)
    finally:
        rewards_selectors.register_payment_merchant_names(merchant_names_of_payments)
    assert [(line.source, line.payment) for line in alone.lines] == [(paid.public_id, paid.public_id)]
    named = rewards_selectors.name_sources(page, program_id=program.pk)
    assert [line.source for line in named.lines] == ["Noodle House"]
