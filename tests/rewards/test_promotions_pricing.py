"""The promotions engine's pricing, on its own: each benefit kind priced exactly (CNY and the zero-decimal JPY), the
stacking order, each condition's reason, budgets and limits as read, the random discount's bounds and distribution,
and a merchant's promotions seen only by its own payments."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from members.models import ConsentPurpose
from members.services import consent_grant
from payments.promotions import context_for
from rewards.models import Benefit, Promotion, PromotionCounter
from rewards.services import promotions
from rewards.services.promotions import Context, Pricing, draw, price
from tests.factories import (
    CardFactory,
    CardProductFactory,
    MemberBankFactory,
    MerchantFactory,
    PointsProgramFactory,
    make_benefit,
    make_consent_text,
    make_promotion,
)

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
AT = dt.datetime(2026, 3, 4, 14, 30, tzinfo=SHANGHAI)  # a Wednesday afternoon


@pytest.fixture
def world() -> dict[str, Any]:
    bank = MemberBankFactory()
    program = PointsProgramFactory(bank=bank, point_value_cny=Decimal("0.01"))
    product = CardProductFactory(bank=bank, tier="gold")
    card = CardFactory(product=product)
    merchant = MerchantFactory(spend_category="dining")
    return {"bank": bank, "program": program, "product": product, "card": card, "merchant": merchant}


def promotion(world: dict[str, Any], **fields: Any) -> Promotion:
    window = {"starts_at": AT - dt.timedelta(days=10), "ends_at": AT + dt.timedelta(days=10)}
    return make_promotion(merchant=world["merchant"], name="test", **{**window, **fields})


def ctx(world: dict[str, Any], **fields: Any) -> Context:
    card = world["card"]
    values: dict[str, Any] = {
        "merchant_id": world["merchant"].pk,
        "livemode": True,
        "currency": "CNY",
        "amount": 10_000,
        "at": AT,
        "method": "card",
        "category": "dining",
        "cardholder_id": card.cardholder_id,
        "card_id": card.pk,
        "card_bank_id": card.bank_id,
        "card_product_id": card.product_id,
        "card_tier": "gold",
        "earning_rate": Decimal(1),
        "program": world["program"],
    }
    values.update(fields)
    return Context(**values)


def reasons(pricing: Pricing) -> dict[int, str]:
    return {item.rule.id: item.reason for item in pricing.not_applied}


def only_line(pricing: Pricing) -> promotions.Line:
    assert len(pricing.lines) == 1, (pricing.lines, pricing.not_applied)
    return pricing.lines[0]


def touch(promo: Promotion) -> None:
    """Saves the row after an M2M change, as every service that changes a promotion's lists does."""
    Promotion.objects.filter(pk=promo.pk).update(updated_at=timezone.now())


# --- each kind, exactly ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "amount", "fields", "discount"),
    [
        ("CNY", 10_000, {"amount_off": 1_500}, 1_500),  # ¥15.00 off ¥100.00
        ("JPY", 10_000, {"amount_off": 1_500}, 1_500),  # 1,500 yen off 10,000 yen
        ("CNY", 999, {"amount_off": 1_500}, 998),  # never the last fen
        ("JPY", 1_000, {"amount_off": 1_500}, 999),  # never the last yen
        ("CNY", 1, {"amount_off": 1_500}, None),  # nothing to take off
    ],
)
def test_amount_off_is_exact_and_keeps_the_last_minor_unit(
    world: dict[str, Any], currency: str, amount: int, fields: dict[str, Any], discount: int | None
) -> None:
    promo = promotion(world, currency=currency, **fields)
    pricing = price(ctx(world, currency=currency, amount=amount))
    if discount is None:
        assert (pricing.lines, reasons(pricing)) == ([], {promo.pk: "nothing_to_give"})
        return
    line = only_line(pricing)
    assert (line.discount, line.cost, line.points) == (discount, discount, 0)
    assert (pricing.discount, pricing.payable) == (discount, amount - discount)


@pytest.mark.parametrize(
    ("currency", "amount", "percent", "cap", "discount"),
    [
        ("CNY", 9_999, "15", None, 1_499),  # 1,499.85 floored
        ("CNY", 9_999, "15", 1_000, 1_000),  # the cap
        ("CNY", 9_999, "12.5", 2_000, 1_249),  # 1,249.875 floored
        ("JPY", 999, "15", None, 149),  # 149.85 yen floored
        ("JPY", 20_000, "50", 3_000, 3_000),  # 5折封顶 3,000 yen
        ("CNY", 2, "100", None, 1),  # a free lunch still costs one fen
    ],
)
def test_percent_off_floors_and_caps(
    world: dict[str, Any], currency: str, amount: int, percent: str, cap: int | None, discount: int
) -> None:
    promotion(
        world,
        currency=currency,
        kind=Promotion.Kind.PERCENT_OFF,
        amount_off=None,
        percent_off=Decimal(percent),
        max_discount=cap,
    )
    line = only_line(price(ctx(world, currency=currency, amount=amount)))
    assert (line.discount, line.cost) == (discount, discount)


def test_points_multiplier_gives_extra_points_on_the_cash_paid(world: dict[str, Any]) -> None:
    promotion(world, kind=Promotion.Kind.POINTS_MULTIPLIER, amount_off=None, multiplier=Decimal("3"))
    line = only_line(price(ctx(world, amount=10_099, earning_rate=Decimal("1.5"))))
    # floor(100.99 × 1.5) = 151 earned by the card; 3× gives 2 × 151 more, worth 3.02 CNY at 0.01
    assert (line.discount, line.points, line.cost) == (0, 302, 302)


def test_cashback_points_cost_the_points_value_rounded_up(world: dict[str, Any]) -> None:
    world["program"].point_value_cny = Decimal("0.003")
    world["program"].save()
    promotion(world, kind=Promotion.Kind.CASHBACK_POINTS, amount_off=None, cashback_rate=Decimal("0.05"))
    program = type(world["program"]).objects.get(pk=world["program"].pk)
    line = only_line(price(ctx(world, amount=10_001, program=program)))
    # 5% of 100.01 CNY = 5.0005 CNY = 1,666.83 points at 0.003 → 1,666 points, worth 4.998 CNY → 500 fen
    assert (line.points, line.cost) == (1_666, 500)


def test_points_are_given_on_what_is_left_after_discounts(world: dict[str, Any]) -> None:
    promotion(world, stacking="stackable", priority=2, amount_off=4_000)
    promotion(
        world,
        stacking="stackable",
        priority=1,
        kind=Promotion.Kind.CASHBACK_POINTS,
        amount_off=None,
        cashback_rate=Decimal("0.1"),
    )
    pricing = price(ctx(world, amount=10_000))
    assert [(line.discount, line.points) for line in pricing.lines] == [(4_000, 0), (0, 600)]
    assert pricing.payable == 6_000


@pytest.mark.parametrize(
    "kind", [{"kind": "points_multiplier", "multiplier": Decimal(2)}, {"kind": "cashback_points", "cashback_rate": 1}]
)
def test_points_kinds_are_refused_outside_cny(world: dict[str, Any], kind: dict[str, Any]) -> None:
    promo = promotion(world, currency="JPY", amount_off=None, **kind)
    pricing = price(ctx(world, currency="JPY", amount=10_000))
    assert (pricing.lines, reasons(pricing)) == ([], {promo.pk: "no_points"})
    no_card = promotion(world, amount_off=None, **kind)
    pricing = price(ctx(world, program=None))  # a card whose bank runs no programme
    assert reasons(pricing)[no_card.pk] == "no_points"


@pytest.mark.parametrize("currency", ["CNY", "JPY"])
def test_a_random_discount_is_quoted_as_its_range_and_drawn_for_a_payment(
    world: dict[str, Any], currency: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    promotion(
        world,
        currency=currency,
        kind=Promotion.Kind.RANDOM_OFF,
        amount_off=None,
        random_min=100,
        random_max=900,
        random_mean=300,
    )
    quoted = only_line(price(ctx(world, currency=currency, amount=5_000)))
    assert (quoted.discount, quoted.discount_max, quoted.cost) == (100, 900, 100)
    assert quoted.as_dict()["discount_max"] == 900
    monkeypatch.setattr(promotions, "rng", random.Random(7))
    drawn = [only_line(price(ctx(world, currency=currency), drawing=True)).discount for _ in range(400)]
    assert all(100 <= value <= 900 for value in drawn)
    assert len(set(drawn)) > 50  # drawn, not fixed
    assert abs(sum(drawn) / len(drawn) - 300) <= 50  # four standard errors of 400 draws
    monkeypatch.setattr(promotions, "rng", random.Random(7))
    again = [only_line(price(ctx(world, currency=currency), drawing=True)).discount for _ in range(400)]
    assert again == drawn  # the seeded generator decides every draw


def test_a_random_discount_draws_within_the_budget_left_and_the_cash(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    promo = promotion(
        world, kind=Promotion.Kind.RANDOM_OFF, amount_off=None, random_min=100, random_max=900, budget=10_000
    )
    Promotion.objects.filter(pk=promo.pk).update(committed=9_750)
    for seed in range(50):
        monkeypatch.setattr(promotions, "rng", random.Random(seed))
        line = only_line(price(ctx(world, amount=5_000), drawing=True))
        assert 100 <= line.discount <= 250
        line = only_line(price(ctx(world, amount=180), drawing=True))
        assert 100 <= line.discount <= 179
    Promotion.objects.filter(pk=promo.pk).update(committed=9_901)
    assert reasons(price(ctx(world), drawing=True)) == {promo.pk: "budget_exhausted"}


class Quantiles(random.Random):
    """Feeds `draw` the uniform variable's quantiles (i + ½) / n in turn: the mean of n draws is then the draw's
    expected value, up to O(1/n), with no sampling noise."""

    def __init__(self, n: int) -> None:
        super().__init__(0)
        self._n, self._i = n, 0

    def random(self) -> float:
        value = (self._i + 0.5) / self._n
        self._i += 1
        return value


CASES = [(100, 900, 300), (1, 10_000, 500), (0, 50, 25), (500, 2_000, 1_900), (1, 2, 1), (10, 20, 19)]


@pytest.mark.parametrize(("low", "high", "mean"), CASES)
def test_draws_expected_value_is_at_most_its_mean_and_close_to_it(low: int, high: int, mean: int) -> None:
    n = 200_000
    quantiles = Quantiles(n)
    values = [draw(low, high, mean, quantiles) for _ in range(n)]
    assert low <= min(values)
    assert max(values) <= high
    expected = sum(values) / n
    assert mean - 1 <= expected <= mean  # the floor takes at most one minor unit off the mean


@pytest.mark.parametrize(("low", "high", "mean"), CASES)
def test_seeded_draws_stay_in_bounds_with_a_sample_mean_near_the_mean(low: int, high: int, mean: int) -> None:
    n = 20_000
    generator = random.Random(20260304)
    values = [draw(low, high, mean, generator) for _ in range(n)]
    assert low <= min(values)
    assert max(values) <= high
    sample = sum(values) / n
    spread = (sum((value - sample) ** 2 for value in values) / n) ** 0.5
    # Pseudo-random sampling noise: within four standard errors of the mean, and never above it by more.
    assert abs(sample - mean) <= 1 + 4 * spread / n**0.5
    again = random.Random(20260304)
    assert [draw(low, high, mean, again) for _ in range(n)] == values  # the seed decides every draw


def test_draw_without_a_mean_centres_and_a_degenerate_range_gives_its_low() -> None:
    generator = random.Random(1)
    values = [draw(0, 100, None, generator) for _ in range(20_000)]
    assert 48 <= sum(values) / len(values) <= 50
    assert draw(300, 300, 300, generator) == 300
    assert draw(300, 200, None, generator) == 300
    assert draw(100, 900, 100, generator) == 100


def test_a_frequency_reward_stamps_each_payment_and_rewards_the_nth(world: dict[str, Any]) -> None:
    benefit = make_benefit(pricing=Benefit.Pricing.CNY, price_cny_units=123_456, price_points=None)
    promo = promotion(
        world, kind=Promotion.Kind.FREQUENCY_REWARD, amount_off=None, frequency_count=3, reward_benefit=benefit
    )
    line = only_line(price(ctx(world)))
    assert (line.stamp, line.rewarded, line.cost, line.discount) == (1, False, 0, 0)
    PromotionCounter.objects.create(
        promotion=promo, cardholder_id=world["card"].cardholder_id, period="2026-03", used=2
    )
    line = only_line(price(ctx(world)))
    assert (line.stamp, line.rewarded, line.cost) == (3, True, 1_235)  # ¥12.3456 rounded up to the fen
    assert line.as_dict() == {
        "promotion": promo.public_id,
        "name": "test",
        "kind": "frequency_reward",
        "discount": 0,
        "points": 0,
        "stamp": 3,
        "of": 3,
        "voucher": True,
    }
    no_card = price(ctx(world, card_id=None))
    assert reasons(no_card) == {promo.pk: "no_card"}


# --- stacking -------------------------------------------------------------------------------------------------------


def test_stackable_promotions_apply_by_priority_then_age_each_on_what_is_left(world: dict[str, Any]) -> None:
    older = promotion(world, stacking="stackable", priority=5, amount_off=1_000)
    low = promotion(world, stacking="stackable", priority=1, kind="percent_off", amount_off=None, percent_off=10)
    newer = promotion(world, stacking="stackable", priority=5, amount_off=500)
    high = promotion(world, stacking="stackable", priority=9, kind="percent_off", amount_off=None, percent_off=50)
    pricing = price(ctx(world, amount=10_000))
    assert [(line.rule.id, line.discount) for line in pricing.lines] == [
        (high.pk, 5_000),
        (older.pk, 1_000),
        (newer.pk, 500),
        (low.pk, 350),  # 10% of the 3,500 left
    ]
    assert pricing.payable == 3_150


def test_an_exclusive_promotion_first_applies_alone(world: dict[str, Any]) -> None:
    first = promotion(world, stacking="exclusive", priority=9, amount_off=2_000)
    stackable = promotion(world, stacking="stackable", priority=5, amount_off=1_000)
    other = promotion(world, stacking="exclusive", priority=1, amount_off=3_000)
    pricing = price(ctx(world))
    assert [line.rule.id for line in pricing.lines] == [first.pk]
    assert reasons(pricing) == {stackable.pk: "exclusive", other.pk: "exclusive"}
    assert pricing.payable == 8_000


def test_an_exclusive_promotion_after_a_stackable_one_is_not_stackable(world: dict[str, Any]) -> None:
    stackable = promotion(world, stacking="stackable", priority=9, amount_off=1_000)
    exclusive = promotion(world, stacking="exclusive", priority=5, amount_off=5_000)
    later = promotion(world, stacking="stackable", priority=1, amount_off=300)
    pricing = price(ctx(world))
    assert [line.rule.id for line in pricing.lines] == [stackable.pk, later.pk]
    assert reasons(pricing) == {exclusive.pk: "not_stackable"}
    assert pricing.discount == 1_300


def test_an_exclusive_promotion_that_does_not_apply_leaves_the_next_its_turn(world: dict[str, Any]) -> None:
    big = promotion(world, stacking="exclusive", priority=9, amount_off=5_000, min_spend=50_000)
    stackable = promotion(world, stacking="stackable", priority=5, amount_off=1_000)
    pricing = price(ctx(world))
    assert [line.rule.id for line in pricing.lines] == [stackable.pk]
    assert reasons(pricing) == {big.pk: "min_spend"}


def test_not_applied_lines_carry_a_translated_message(world: dict[str, Any]) -> None:
    from django.utils import translation

    promo = promotion(world, min_spend=20_000)
    for language, message in (("en", "The payment is below the minimum spend."), ("zh-hans", "支付金额低于最低消费。")):
        with translation.override(language):
            (item,) = price(ctx(world)).not_applied
            assert item.as_dict() == {
                "promotion": promo.public_id,
                "name": "test",
                "reason": "min_spend",
                "message": message,
            }


# --- conditions -----------------------------------------------------------------------------------------------------


def test_min_spend_is_inclusive(world: dict[str, Any]) -> None:
    promo = promotion(world, min_spend=10_000)
    assert reasons(price(ctx(world, amount=9_999))) == {promo.pk: "min_spend"}
    assert only_line(price(ctx(world, amount=10_000))).discount == 1_000


def test_store_condition(world: dict[str, Any]) -> None:
    from merchants.models import Store

    here = Store.objects.create(merchant=world["merchant"], code="A", name="A")
    there = Store.objects.create(merchant=world["merchant"], code="B", name="B")
    promo = promotion(world)
    promo.stores.add(here)
    touch(promo)
    assert reasons(price(ctx(world, store_id=there.pk))) == {promo.pk: "store"}
    assert reasons(price(ctx(world, store_id=None))) == {promo.pk: "store"}
    assert only_line(price(ctx(world, store_id=here.pk))).rule.id == promo.pk


def test_category_condition(world: dict[str, Any]) -> None:
    promo = promotion(world, categories=["grocery", "travel"])
    assert reasons(price(ctx(world, category="dining"))) == {promo.pk: "category"}
    assert only_line(price(ctx(world, category="travel"))).rule.id == promo.pk


def test_card_bank_and_product_conditions(world: dict[str, Any]) -> None:
    by_bank = promotion(world, stacking="stackable")
    by_bank.card_banks.add(world["bank"])
    touch(by_bank)
    by_product = promotion(world, stacking="stackable")
    by_product.card_products.add(world["product"])
    touch(by_product)
    other = CardFactory()
    pricing = price(ctx(world, card_bank_id=other.bank_id, card_product_id=other.product_id))
    assert reasons(pricing) == {by_bank.pk: "card_bank", by_product.pk: "card_product"}
    no_card = price(ctx(world, card_id=None, card_bank_id=None, card_product_id=None, card_tier=None))
    assert reasons(no_card) == {by_bank.pk: "card_bank", by_product.pk: "card_product"}
    assert len(price(ctx(world)).lines) == 2


def test_a_promotions_card_lists_are_read_again_once_its_row_changes(world: dict[str, Any]) -> None:
    promo = promotion(world)
    assert only_line(price(ctx(world))).rule.id == promo.pk
    promo.card_banks.add(MemberBankFactory())
    touch(promo)
    assert reasons(price(ctx(world))) == {promo.pk: "card_bank"}


def test_card_tier_condition(world: dict[str, Any]) -> None:
    promo = promotion(world, card_tiers=["platinum"])
    assert reasons(price(ctx(world, card_tier="gold"))) == {promo.pk: "card_tier"}
    assert only_line(price(ctx(world, card_tier="platinum"))).rule.id == promo.pk


def test_method_condition(world: dict[str, Any]) -> None:
    promo = promotion(world, methods=["payment_code"])
    assert reasons(price(ctx(world, method="card"))) == {promo.pk: "method"}
    assert only_line(price(ctx(world, method="payment_code"))).rule.id == promo.pk


def test_weekday_condition_reads_the_local_day(world: dict[str, Any]) -> None:
    promo = promotion(world, weekdays=[3])  # Wednesdays in Shanghai
    assert only_line(price(ctx(world, at=AT))).rule.id == promo.pk
    thursday = dt.datetime(2026, 3, 5, 0, 30, tzinfo=SHANGHAI)  # still Wednesday in UTC
    assert reasons(price(ctx(world, at=thursday))) == {promo.pk: "weekday"}
    utc_wednesday_evening = dt.datetime(2026, 3, 4, 17, 0, tzinfo=dt.UTC)  # Thursday 01:00 in Shanghai
    assert reasons(price(ctx(world, at=utc_wednesday_evening))) == {promo.pk: "weekday"}


@pytest.mark.parametrize(
    ("hour_from", "hour_to", "inside", "outside"),
    [
        (11, 14, [11, 13], [10, 14, 23]),  # lunch, the end hour excluded
        (22, 2, [22, 23, 0, 1], [2, 12, 21]),  # over midnight
        (None, 6, [0, 5], [6, 20]),
        (18, None, [18, 23], [0, 17]),
    ],
)
def test_hours_condition(
    world: dict[str, Any], hour_from: int | None, hour_to: int | None, inside: list[int], outside: list[int]
) -> None:
    promo = promotion(world, hour_from=hour_from, hour_to=hour_to)
    for hour in inside:
        at = dt.datetime(2026, 3, 4, hour, 15, tzinfo=SHANGHAI)
        assert only_line(price(ctx(world, at=at))).rule.id == promo.pk, hour
    for hour in outside:
        at = dt.datetime(2026, 3, 4, hour, 15, tzinfo=SHANGHAI)
        assert reasons(price(ctx(world, at=at))) == {promo.pk: "hours"}, hour


def test_first_purchase_is_asked_only_when_a_promotion_needs_it(world: dict[str, Any]) -> None:
    asked: list[bool] = []

    def first(answer: bool) -> Any:
        def ask() -> bool:
            asked.append(answer)
            return answer

        return ask

    promotion(world)
    price(ctx(world, first_purchase=first(False)))
    assert asked == []
    promo = promotion(world, first_purchase=True, stacking="stackable", priority=5)
    assert reasons(price(ctx(world, first_purchase=first(False)))) == {promo.pk: "first_purchase"}
    assert price(ctx(world, first_purchase=first(True))).lines[0].rule.id == promo.pk
    assert asked == [False, True]


def test_segment_condition(world: dict[str, Any]) -> None:
    promo = promotion(world, segment_tags=["foodie", "night_owl"])
    assert reasons(price(ctx(world))) == {promo.pk: "segment"}
    assert reasons(price(ctx(world, segments=lambda: frozenset({"traveller"})))) == {promo.pk: "segment"}
    assert only_line(price(ctx(world, segments=lambda: frozenset({"foodie"})))).rule.id == promo.pk


def test_segment_tags_are_read_only_with_consent_to_personalised_offers(world: dict[str, Any]) -> None:
    promo = promotion(world, segment_tags=["foodie"])
    card = world["card"]
    holder = card.cardholder
    holder.segment_tags = ["foodie"]
    holder.save()

    def priced() -> Pricing:
        context = context_for(
            merchant=world["merchant"],
            livemode=True,
            amount=10_000,
            currency="CNY",
            method="card",
            cardholder=holder,
            card=card,
            store=None,
            at=timezone.now(),
        )
        return price(context)

    now = timezone.now()
    Promotion.objects.filter(pk=promo.pk).update(
        starts_at=now - dt.timedelta(days=1), ends_at=now + dt.timedelta(days=1)
    )
    assert reasons(priced()) == {promo.pk: "segment"}  # no consent: the tags are never read
    make_consent_text(ConsentPurpose.PERSONALISED_OFFERS)
    consent_grant(cardholder=holder, purpose=ConsentPurpose.PERSONALISED_OFFERS)
    assert only_line(priced()).rule.id == promo.pk


def test_a_co_funded_promotion_waits_for_the_banks_approval(world: dict[str, Any]) -> None:
    cofunder = MemberBankFactory()
    pending = promotion(world, cofunder=cofunder, cofunder_share=Decimal("0.5"), cofunding="pending")
    rejected = promotion(world, cofunder=cofunder, cofunder_share=Decimal("0.5"), cofunding="rejected")
    assert reasons(price(ctx(world))) == {pending.pk: "cofunding_pending", rejected.pk: "cofunding_rejected"}
    Promotion.objects.filter(pk=pending.pk).update(cofunding="approved", updated_at=timezone.now())
    pricing = price(ctx(world))
    assert only_line(pricing).rule.id == pending.pk
    assert pricing.lines[0].rule.cofunder_share == Decimal("0.5")


def test_currency_condition(world: dict[str, Any]) -> None:
    promo = promotion(world, currency="JPY")
    assert reasons(price(ctx(world, currency="CNY"))) == {promo.pk: "currency"}
    assert only_line(price(ctx(world, currency="JPY"))).rule.id == promo.pk


def test_only_active_promotions_on_now_in_the_payments_mode_are_priced(world: dict[str, Any]) -> None:
    promotion(world, status=Promotion.Status.PAUSED)
    promotion(world, status=Promotion.Status.ENDED)
    promotion(world, starts_at=AT + dt.timedelta(minutes=1))
    promotion(world, ends_at=AT)
    promotion(world, livemode=False)
    pricing = price(ctx(world))
    assert (pricing.lines, pricing.not_applied) == ([], [])
    assert only_line(price(ctx(world, livemode=False))).discount == 1_000


# --- budgets and limits as read -------------------------------------------------------------------------------------


def test_budget_left_limits_what_is_given(world: dict[str, Any]) -> None:
    fixed = promotion(world, budget=5_000, stacking="stackable", priority=3)
    percent = promotion(
        world, kind="percent_off", amount_off=None, percent_off=50, budget=5_000, stacking="stackable", priority=2
    )
    Promotion.objects.filter(pk=fixed.pk).update(committed=4_001)  # 999 left: a fixed amount is all or nothing
    Promotion.objects.filter(pk=percent.pk).update(committed=4_500)  # 500 left: half of 10,000 is 5,000
    pricing = price(ctx(world))
    assert reasons(pricing) == {fixed.pk: "budget_exhausted", percent.pk: "budget_exhausted"}
    Promotion.objects.filter(pk=fixed.pk).update(committed=4_000)
    assert only_line(price(ctx(world))).rule.id == fixed.pk


def test_points_kinds_are_refused_when_their_cost_exceeds_the_budget_left(world: dict[str, Any]) -> None:
    promo = promotion(world, kind="cashback_points", amount_off=None, cashback_rate=Decimal("0.05"), budget=1_000)
    Promotion.objects.filter(pk=promo.pk).update(committed=501)  # 500 points would cost 500
    assert reasons(price(ctx(world))) == {promo.pk: "budget_exhausted"}
    Promotion.objects.filter(pk=promo.pk).update(committed=500)
    assert only_line(price(ctx(world))).cost == 500


def test_uses_and_cardholder_limits(world: dict[str, Any]) -> None:
    capped = promotion(world, max_uses=10, stacking="stackable")
    daily = promotion(world, per_cardholder_daily=2, stacking="stackable")
    campaign = promotion(world, per_cardholder=3, stacking="stackable")
    holder = world["card"].cardholder_id
    Promotion.objects.filter(pk=capped.pk).update(uses=10)
    PromotionCounter.objects.create(promotion=daily, cardholder_id=holder, period="2026-03-04", used=2)
    PromotionCounter.objects.create(promotion=campaign, cardholder_id=holder, period="", used=3)
    assert reasons(price(ctx(world))) == {
        capped.pk: "uses_exhausted",
        daily.pk: "cardholder_daily_limit",
        campaign.pk: "cardholder_limit",
    }
    # the next day, and another cardholder, the per-cardholder limits start again
    tomorrow = price(ctx(world, at=AT + dt.timedelta(days=1)))
    assert reasons(tomorrow) == {capped.pk: "uses_exhausted", campaign.pk: "cardholder_limit"}
    other = price(ctx(world, cardholder_id=holder + 10_000))
    assert reasons(other) == {capped.pk: "uses_exhausted"}


def test_excluded_promotions_are_reported_as_spent(world: dict[str, Any]) -> None:
    promo = promotion(world)
    pricing = price(ctx(world), exclude=[promo.pk])
    assert (pricing.lines, reasons(pricing)) == ([], {promo.pk: "budget_exhausted"})


# --- merchants are apart ---------------------------------------------------------------------------------------------


def test_a_merchants_promotion_never_prices_another_merchants_payment(world: dict[str, Any]) -> None:
    promotion(world)
    promotion(world, kind="percent_off", amount_off=None, percent_off=90, stacking="stackable")
    other = MerchantFactory(spend_category="dining")
    pricing = price(ctx(world, merchant_id=other.pk))
    assert (pricing.lines, pricing.not_applied, pricing.payable) == ([], [], 10_000)
    mine = promotion({**world, "merchant": other}, amount_off=10)
    pricing = price(ctx(world, merchant_id=other.pk))
    assert [line.rule.id for line in pricing.lines] == [mine.pk]
    assert all(item.rule.id == mine.pk for item in pricing.lines + pricing.not_applied)  # type: ignore[operator]


def test_a_random_discount_below_its_minimum_budget_is_quoted_as_the_payment_would_get_it(
    world: dict[str, Any],
) -> None:
    promo = promotion(
        world, kind=Promotion.Kind.RANDOM_OFF, amount_off=None, random_min=100, random_max=900, budget=10_000
    )
    Promotion.objects.filter(pk=promo.pk).update(committed=9_950)  # 50 left, below the least it gives
    assert reasons(price(ctx(world), drawing=True)) == {promo.pk: "budget_exhausted"}
    quoted = price(ctx(world))
    assert (quoted.lines, reasons(quoted)) == ([], {promo.pk: "budget_exhausted"})
