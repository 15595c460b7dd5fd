"""The portal's offers page: merchants' live promotions that apply to one of the cardholder's cards, and the ones
picked for them by segment only with their consent to personalised offers."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from members import services as members_services
from members.models import ConsentPurpose
from rewards import selectors
from rewards.models import Promotion
from tests.factories import (
    CardholderFactory,
    CardProductFactory,
    MemberBankFactory,
    MerchantFactory,
    card_at,
    make_consent_text,
    make_promotion,
)
from tests.i18n import shown
from tests.rewards.portal import signed_in

pytestmark = pytest.mark.django_db
URL = "rewards_portal:offers"


def promotion(merchant: Any, name: str, **fields: Any) -> Promotion:
    return make_promotion(merchant=merchant, name=name, **{"min_spend": 10_000, **fields})


@pytest.fixture
def world() -> dict[str, Any]:
    bank, other_bank = MemberBankFactory(), MemberBankFactory()
    holder = CardholderFactory(segment_tags=["dining"])
    card = card_at(holder, bank)
    return {"holder": holder, "card": card, "bank": bank, "other_bank": other_bank, "merchant": MerchantFactory()}


def names(offers: list[Any]) -> list[str]:
    return [offer.promotion.name for group in offers for offer in group.offers]


def test_eligible_offers_shown_with_their_cards_and_the_rest_hidden(world: dict[str, Any]) -> None:
    merchant, bank = world["merchant"], world["bank"]
    promotion(merchant, "open")
    promotion(merchant, "my-bank").card_banks.add(bank)
    promotion(merchant, "other-bank").card_banks.add(world["other_bank"])
    promotion(merchant, "other-product").card_products.add(CardProductFactory(bank=bank))
    promotion(merchant, "diamond-only", card_tiers=["diamond"])
    promotion(merchant, "paused", status=Promotion.Status.PAUSED)
    promotion(merchant, "ended", status=Promotion.Status.ENDED)
    promotion(
        merchant,
        "over",
        ends_at=timezone.now() - dt.timedelta(minutes=1),
        starts_at=timezone.now() - dt.timedelta(days=2),
    )
    promotion(merchant, "spent", committed=100_000)
    promotion(merchant, "test-mode", livemode=False)
    cofunding = {"cofunder": world["other_bank"], "cofunder_share": Decimal("0.5")}
    promotion(merchant, "pending", cofunding=Promotion.Cofunding.PENDING, **cofunding)
    promotion(merchant, "rejected", cofunding=Promotion.Cofunding.REJECTED, **cofunding)
    promotion(merchant, "approved", cofunding=Promotion.Cofunding.APPROVED, **cofunding)
    with CaptureQueriesContext(connection) as queries:
        offers = selectors.offers_for_cardholder(cardholder=world["holder"])
    assert sorted(names(offers.for_everyone)) == ["approved", "my-bank", "open"]
    assert len(queries) == 6
    assert all(offer.cards == [world["card"]] for group in offers.for_everyone for offer in group.offers)

    response = signed_in(world["holder"]).get(reverse(URL))
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('class="offer kind-') == 3
    assert f'data-card="{world["card"].pk}"' in html
    assert "•••• " + world["card"].last4 in html


def test_a_targeted_offer_is_shown_only_with_consent_and_a_matching_tag(world: dict[str, Any]) -> None:
    merchant, holder = world["merchant"], world["holder"]
    promotion(merchant, "everyone")
    promotion(merchant, "diners", segment_tags=["dining", "travel"])
    promotion(merchant, "golfers", segment_tags=["golf"])

    offers = selectors.offers_for_cardholder(cardholder=holder)
    assert (names(offers.for_everyone), names(offers.picked), offers.personalised) == (["everyone"], [], False)
    client = signed_in(holder, language="en")
    html = client.get(reverse(URL)).content.decode()
    assert "Personalised offers are off." in html
    assert reverse("members:consents") in html
    assert "diners" not in html

    make_consent_text(ConsentPurpose.PERSONALISED_OFFERS)
    members_services.consent_grant(cardholder=holder, purpose=ConsentPurpose.PERSONALISED_OFFERS)
    offers = selectors.offers_for_cardholder(cardholder=holder)
    assert (names(offers.for_everyone), names(offers.picked), offers.personalised) == (["everyone"], ["diners"], True)
    html = client.get(reverse(URL)).content.decode()
    assert "diners" in html
    assert "golfers" not in html
    assert "Personalised offers are off." not in html

    members_services.consent_withdraw(cardholder=holder, purpose=ConsentPurpose.PERSONALISED_OFFERS)
    assert names(selectors.offers_for_cardholder(cardholder=holder).picked) == []


def test_each_kind_is_described_in_english_and_the_page_renders_in_chinese(world: dict[str, Any]) -> None:
    from rewards.models import Benefit
    from tests.factories import make_benefit

    merchant = world["merchant"]
    voucher = make_benefit(title_en="Noodle voucher", title_zh="面条券", kind=Benefit.Kind.VOUCHER, merchant=merchant)
    promotion(merchant, "a")
    promotion(
        merchant,
        "b",
        kind=Promotion.Kind.PERCENT_OFF,
        amount_off=None,
        min_spend=0,
        percent_off=Decimal("50"),
        max_discount=2_000,
        weekdays=[6, 7],
        hour_from=18,
        hour_to=22,
        first_purchase=True,
        methods=["payment_code"],
    )
    promotion(merchant, "c", kind=Promotion.Kind.POINTS_MULTIPLIER, amount_off=None, multiplier=Decimal("2"))
    promotion(merchant, "d", kind=Promotion.Kind.RANDOM_OFF, amount_off=None, random_min=100, random_max=500)
    promotion(merchant, "e", kind=Promotion.Kind.CASHBACK_POINTS, amount_off=None, cashback_rate=Decimal("0.05"))
    promotion(
        merchant, "f", kind=Promotion.Kind.FREQUENCY_REWARD, amount_off=None, frequency_count=5, reward_benefit=voucher
    )
    html = signed_in(world["holder"], language="en").get(reverse(URL)).content.decode()
    for text in (
        "¥10 off orders of ¥100",
        "50% off, up to ¥20",
        "2× points",
        "A random ¥1–¥5 off",
        "5% back as points",
        "Every 5th payment in a month earns Noodle voucher",
        "From 18:00 to 22:00",
        "Your first payment at this merchant only",
        "Paying by payment code",
        "On Sat, Sun",
    ):
        assert text in html, text

    response = signed_in(world["holder"], language="zh-hans").get(reverse(URL))
    assert response.status_code == 200
    html = response.content.decode()
    assert shown("For everyone") in html
    assert shown("%(off)s off orders of %(min)s", off="¥10", min="¥100") in html
    assert "面条券" in html  # the voucher's title in the page's language


def test_a_cardholder_without_active_cards_sees_no_offers(world: dict[str, Any]) -> None:
    promotion(world["merchant"], "open")
    holder = CardholderFactory()
    offers = selectors.offers_for_cardholder(cardholder=holder)
    assert (offers.for_everyone, offers.picked) == ([], [])
    html = signed_in(holder).get(reverse(URL)).content.decode()
    assert 'class="offer kind-' not in html
