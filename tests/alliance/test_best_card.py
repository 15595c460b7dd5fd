"""Find my best card: a worked example computed by hand (points at the programme's value, cashback, fee, the pair
that splits the categories), privileges valued within their quotas and counted once in a pair, the history read only
with consent (net of refunds, the holder's own, the last 12 months), bad input refused with nothing written, the page
in both languages, and the queries the same whatever the number of products."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from alliance import services
from alliance.services.best_card import HISTORY_ACTION
from core.errors import ValidationFailed
from core.models import AuditLog
from members.models import CardProduct
from payments.models import PaymentIntent
from rewards.models import Benefit
from tests.factories import (
    CardFactory,
    CardholderFactory,
    CardProductFactory,
    MemberBankFactory,
    MerchantFactory,
    PointsProgramFactory,
    make_benefit,
    make_cardholder,
)
from tests.i18n import shown
from tests.rewards.portal import signed_in

pytestmark = pytest.mark.django_db

URL = "/portal/alliance/best-card/"
# A month: dining 1,000.00, travel 2,500.00, everything else 333.33 (a year: 12,000, 30,000 and 3,999.96).
SPENDING = {"dining": Decimal("1000.00"), "travel": Decimal("2500.00"), "other": Decimal("333.33")}


def _product(value: str, code: str, **fields: Any) -> CardProduct:
    bank = MemberBankFactory()
    PointsProgramFactory(bank=bank, point_value_cny=Decimal(value))
    return CardProductFactory(bank=bank, code=code, **fields)


@pytest.fixture
def three() -> dict[str, CardProduct]:
    """A dining card (free), a travel card with cashback on travel (CNY 200 a year) and a plain card (CNY 100)."""
    return {
        "dine": _product(
            "0.005", "DINE", name="美食卡", name_en="Dining Card", earning_rates={"dining": "5", "other": "1"}
        ),
        "travel": _product(
            "0.004",
            "TRAVEL",
            name="旅行卡",
            name_en="Travel Card",
            tier="gold",
            earning_rates={"travel": "4", "other": "1"},
            cashback_rates={"travel": "0.01"},
            annual_fee=Decimal("200.00"),
            apply_url="https://travel.example/apply/TRAVEL",
        ),
        "plain": _product("0.01", "PLAIN", earning_rates={"other": "1"}, annual_fee=Decimal("100.00")),
    }


def test_the_worked_example_ranks_the_cards_by_their_year_in_exact_figures(three: dict[str, CardProduct]) -> None:
    result = services.best_card_for(make_cardholder(), SPENDING)

    assert [card.product.code for card in result.ranking] == ["TRAVEL", "DINE", "PLAIN"]
    travel, dine, plain = result.ranking
    # Travel: dining 12,000 × 1 + travel 30,000 × 4 + other floor(3,999.96 × 1) = 135,999 points at 0.004, plus 1% of
    # 30,000 travel as cashback, less the fee: 543.996 + 300 − 200.
    by_category = {line.category: line for line in travel.lines}
    assert by_category["travel"].annual_spend == Decimal("30000.00")
    assert (by_category["travel"].points, by_category["travel"].points_value) == (120_000, Decimal("480.000"))
    assert by_category["travel"].cashback == Decimal("300.0000")
    assert (by_category["other"].points, by_category["other"].points_value) == (3_999, Decimal("15.996"))
    assert by_category["dining"].cashback == 0  # no "other" cashback rate to fall back on
    assert travel.points == 135_999
    assert travel.net == Decimal("643.996")
    # Dining: 60,000 + 30,000 + 3,999 points at 0.005, no fee.
    assert dine.points == 93_999
    assert dine.net == Decimal("469.995")
    # Plain: 45,999 points at 0.01, less 100.
    assert plain.net == Decimal("359.99")


def test_the_pair_sends_each_category_to_the_card_that_earns_more_and_beats_the_best_card(
    three: dict[str, CardProduct],
) -> None:
    result = services.best_card_for(make_cardholder(), SPENDING)

    pair = result.pair
    assert pair is not None
    assert {card.product.code for card in pair.cards} == {"TRAVEL", "DINE"}
    assert {line.line.category: line.card.product.code for line in pair.lines if line.line.annual_spend} == {
        "dining": "DINE",  # 300.00 against 48.00
        "travel": "TRAVEL",  # 480 + 300 against 150
        "other": "DINE",  # 19.995 against 15.996
    }
    # 300 + 780 + 19.995, less the travel card's fee.
    assert pair.net == Decimal("899.995")
    assert pair.annual_fee == Decimal("200.00")
    assert result.pair_gain == Decimal("255.999")


def test_the_annual_fee_decides_between_cards_that_earn_the_same() -> None:
    free = _product("0.005", "FREE", earning_rates={"other": "2"})
    costly = _product("0.005", "COSTLY", earning_rates={"other": "3"}, annual_fee=Decimal("400.00"))

    result = services.best_card_for(make_cardholder(), {"other": Decimal("1000")})

    # 24,000 points (120.00) against 36,000 (180.00) less 400.
    assert [(card.product.pk, card.net) for card in result.ranking] == [
        (free.pk, Decimal("120.000")),
        (costly.pk, Decimal("-220.000")),
    ]
    # Together they cost the fee and earn no more than the better card alone on the one category.
    assert result.pair is not None
    assert result.pair.net == Decimal("-220.000")
    assert result.pair_gain == Decimal("-340.000")


def test_privileges_count_as_often_as_stated_and_allowed_and_once_in_a_pair(three: dict[str, CardProduct]) -> None:
    now = timezone.now()
    # CNY 300 a use, gold cards only, twice a year at most: the travel card only.
    roadside = make_benefit(
        pricing=Benefit.Pricing.FREE,
        kind=Benefit.Kind.SERVICE,
        eligible_tiers=["gold"],
        value_cny_units=3_000_000,
        limit_per_year=2,
    )
    # CNY 50 a use, every card, once a month: as often as the holder says (3).
    lounge = make_benefit(
        pricing=Benefit.Pricing.FREE, kind=Benefit.Kind.LOUNGE, value_cny_units=500_000, limit_per_month=1
    )
    # Half a year left on offer: 4 stated uses × 184 / 365 days (the day begun counts) → 2 uses of CNY 10.
    make_benefit(
        pricing=Benefit.Pricing.FREE,
        kind=Benefit.Kind.GIFT,
        value_cny_units=100_000,
        eligible_products=[three["dine"]],
        valid_until=now + dt.timedelta(days=183, hours=1),
    )
    # A day short of a year left: the one stated use still counts.
    make_benefit(
        pricing=Benefit.Pricing.FREE,
        kind=Benefit.Kind.VOUCHER,
        value_cny_units=100_000,
        eligible_products=[three["plain"]],
        valid_until=now + dt.timedelta(days=364, hours=23),
    )
    make_benefit(pricing=Benefit.Pricing.FREE, kind=Benefit.Kind.COUPON)  # no stated value: listed, worth 0
    make_benefit(kind=Benefit.Kind.LOUNGE, value_cny_units=9_000_000)  # bought with points: not a privilege

    uses = {"service": 5, "lounge": 3, "gift": 4, "coupon": 1, "voucher": 1}
    result = services.best_card_for(make_cardholder(), SPENDING, uses, now=now)

    cards = {card.product.code: card for card in result.ranking}
    travel_benefits = {line.benefit.pk: (line.uses, line.value) for line in cards["TRAVEL"].benefits}
    assert travel_benefits[roadside.pk] == (2, Decimal("600.0000"))
    assert travel_benefits[lounge.pk] == (3, Decimal("150.0000"))
    assert cards["TRAVEL"].benefits_value == Decimal("750.0000")
    assert cards["DINE"].benefits_value == Decimal("150.0000") + Decimal("20.0000")
    assert cards["PLAIN"].benefits_value == Decimal("150.0000") + Decimal("10.0000")
    coupon = next(line for line in cards["PLAIN"].benefits if line.benefit.kind == Benefit.Kind.COUPON)
    assert (coupon.uses, coupon.value_per_use, coupon.value) == (1, None, 0)
    assert cards["TRAVEL"].net == Decimal("643.996") + 750
    # The dining and travel cards both give the lounge visits: counted once (899.995 + 600 + 150 + 20).
    assert result.pair is not None
    assert {card.product.code for card in result.pair.cards} == {"TRAVEL", "DINE"}
    assert sorted(line.benefit.pk for line in result.pair.benefits).count(lounge.pk) == 1
    assert result.pair.net == Decimal("1669.995")


def _pay(holder: Any, category: str, fen: int, days_ago: int, *, refunded: int = 0, **fields: Any) -> PaymentIntent:
    card = CardFactory(cardholder=holder)
    values: dict[str, Any] = {
        "merchant": MerchantFactory(),
        "cardholder": holder,
        "card": card,
        "amount": fen,
        "amount_captured": fen,
        "amount_refund_reserved": refunded,
        "amount_refunded": refunded,
        "status": "succeeded",
        "spend_category": category,
        "captured_at": timezone.now() - dt.timedelta(days=days_ago),
        **fields,
    }
    values.setdefault("created_at", values["captured_at"])  # made when captured, as the capture window has it
    return PaymentIntent.objects.create(**values)


def test_the_history_is_the_holders_own_last_year_net_of_refunds_averaged_per_month() -> None:
    holder = make_cardholder()
    _pay(holder, "dining", 120_000, 30)
    _pay(holder, "dining", 60_000, 100, refunded=20_000)  # 400.00 net
    _pay(holder, "travel", 300_000, 200)
    _pay(holder, "travel", 99_999, 400)  # over a year ago
    _pay(holder, "fuel", 50_000, 10, livemode=False)  # a sandbox payment
    _pay(holder, "fuel", 50_000, 10, currency="USD")
    _pay(holder, "fuel", 50_000, 10, amount_captured=0, status="requires_capture")
    _pay(holder, "fuel", 50_000, 10, status="canceled")  # captured, then voided (撤销): no spending
    _pay(CardholderFactory(), "dining", 500_000, 5)  # someone else's

    history = services.spending_from_history(cardholder=holder, consented=True, actor=holder.user)

    assert history.monthly_spending == {
        "dining": Decimal("133.33"),  # 1,600.00 / 12
        "travel": Decimal("250.00"),
        "groceries": 0,
        "fuel": 0,
        "online": 0,
        "overseas": 0,
        "other": 0,
    }
    row = AuditLog.objects.get(action=HISTORY_ACTION)
    assert (row.actor_id, row.object_id) == (holder.user.pk, str(holder.pk))


def test_without_consent_no_history_is_read_nor_recorded() -> None:
    holder = make_cardholder()
    _pay(holder, "dining", 120_000, 30)
    audits = AuditLog.objects.count()

    with CaptureQueriesContext(connection) as queries, pytest.raises(ValidationFailed) as refused:
        services.spending_from_history(cardholder=holder, consented=False, actor=holder.user)
    assert refused.value.code == "consent_required"
    assert len(queries) == 0

    client = signed_in(holder)
    with CaptureQueriesContext(connection) as queries:
        response = client.post(URL, {"action": "import", "spend_dining": "10"})
    assert response.status_code == 400
    assert response.context["form"].errors["use_history"]
    assert not [query for query in queries.captured_queries if "payments_paymentintent" in query["sql"]]
    assert AuditLog.objects.count() == audits


def test_the_page_fills_in_the_amounts_from_the_history_with_consent(three: dict[str, CardProduct]) -> None:
    holder = make_cardholder()
    _pay(holder, "travel", 300_000, 20)

    response = signed_in(holder).post(URL, {"action": "import", "use_history": "on"})

    assert response.status_code == 200
    assert response.context["form"]["spend_travel"].value() == Decimal("250.00")
    assert response.context["history"].monthly_spending["travel"] == Decimal("250.00")
    assert response.context["result"].ranking  # compared at once
    assert AuditLog.objects.filter(action=HISTORY_ACTION, object_id=str(holder.pk)).count() == 1


@pytest.mark.parametrize(
    ("posted", "field"),
    [
        ({"spend_dining": "-1"}, "spend_dining"),
        ({"spend_dining": "abc"}, "spend_dining"),
        ({"spend_dining": "NaN"}, "spend_dining"),
        ({"spend_dining": "10.001"}, "spend_dining"),
        ({"spend_travel": "1000000000"}, "spend_travel"),
        ({"spend_dining": "10", "uses_lounge": "-2"}, "uses_lounge"),
        ({"spend_dining": "0", "spend_other": ""}, "__all__"),
        ({}, "__all__"),
    ],
)
def test_bad_input_is_refused_on_the_form_and_nothing_is_written(
    three: dict[str, CardProduct], posted: dict[str, str], field: str
) -> None:
    holder = make_cardholder()
    client = signed_in(holder)
    audits = AuditLog.objects.count()

    response = client.post(URL, {"action": "compare", **posted})

    assert response.status_code == 400
    assert response.context["form"].errors[field]
    assert response.context["result"] is None
    assert AuditLog.objects.count() == audits


@pytest.mark.parametrize(
    "spending",
    [
        {"dining": Decimal("-1")},
        {"dining": "x"},
        {"dining": Decimal("1000000.01")},
        {"dining": Decimal("0"), "other": Decimal("0")},
        {"pets": Decimal("10")},
    ],
)
def test_the_service_refuses_bad_spending(spending: dict[str, object]) -> None:
    with pytest.raises(ValidationFailed):
        services.best_card_for(make_cardholder(), spending)


@pytest.mark.parametrize(
    ("language", "dine_name", "bank_name"), [("zh-hans", "美食卡", "name_zh"), ("en", "Dining Card", "name_en")]
)
def test_the_page_explains_each_card_in_the_visitors_language(
    three: dict[str, CardProduct], language: str, dine_name: str, bank_name: str
) -> None:
    holder = make_cardholder()
    CardFactory(cardholder=holder, product=three["dine"])
    client = signed_in(holder, language=language)
    assert client.get(URL).status_code == 200

    response = client.post(URL, {"action": "compare", "spend_dining": "1000", "spend_travel": "2500"})

    assert response.status_code == 200
    page = response.content.decode()
    travel_bank = getattr(three["travel"].bank, bank_name)
    assert dine_name in page
    assert travel_bank in page
    assert 'href="https://travel.example/apply/TRAVEL"' in page
    assert page.count("/apply/") == 2  # the travel card's link, in the ranking and beside the pair
    assert 'id="pair"' in page
    for message in ("Find my best card", "You hold this card", "The best two cards together"):
        assert (shown(message) if language == "zh-hans" else message) in page


def test_figures_are_rounded_to_the_fen_once_where_shown(three: dict[str, CardProduct]) -> None:
    client = signed_in(make_cardholder(), language="en")

    response = client.post(
        URL, {"action": "compare", "spend_dining": "1000", "spend_travel": "2500", "spend_other": "333.33"}
    )

    page = response.content.decode()
    assert "470.00" in page  # 469.995, half to even
    assert "644.00" in page  # 643.996
    assert "900.00" in page  # the pair's 899.995
    assert "256.00" in page  # what the pair earns over the travel card, 255.999


def test_the_portal_menu_links_the_page() -> None:
    response = signed_in(make_cardholder()).get(reverse("members:dashboard"))
    assert f'href="{URL}"' in response.content.decode()


def _queries(products: int) -> int:
    for n in range(products):
        _product("0.005", f"Q{n}", earning_rates={"other": "1", "dining": str(n + 1)}, tier="gold")
    holder = make_cardholder()
    CardFactory(cardholder=holder, product=CardProduct.objects.first())
    with CaptureQueriesContext(connection) as queries:
        result = services.best_card_for(holder, {"dining": Decimal("100"), "other": Decimal("50")}, {"service": 1})
    assert len(result.ranking) == CardProduct.objects.count()
    return len(queries)


def test_the_queries_do_not_grow_with_the_products() -> None:
    make_benefit(
        pricing=Benefit.Pricing.FREE, kind=Benefit.Kind.SERVICE, value_cny_units=10_000, eligible_tiers=["gold"]
    )
    few = _queries(2)
    many = _queries(18)
    # Products with banks and programmes; the holder's cards; privileges with their banks, products and stores.
    assert few == many == 6
