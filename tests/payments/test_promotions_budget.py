"""A promotion's budget moving with its payments: partial refunds hand cost and points back cumulatively and exactly,
a partial capture keeps its share, a void, a decline and a retry give everything back, a frequency reward's voucher
never fails its capture."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import pytest
from django.db.models import F
from django.utils import timezone

from payments import services
from payments.models import PaymentIntent
from rewards.models import Account, Benefit, Promotion, PromotionCounter, PromotionUse, Voucher
from rewards.selectors import cardholder_wallet
from rewards.services import promotions as engine
from tests.concurrency import Background
from tests.factories import (
    make_benefit,
    make_promotion,
)

pytestmark = pytest.mark.django_db
_keys = itertools.count()
Status = PaymentIntent.Status
UseStatus = PromotionUse.Status
START_POINTS = 2_000


def key() -> str:
    return f"budget-{next(_keys)}"


@pytest.fixture
def world(points_world: dict[str, Any]) -> dict[str, Any]:
    return points_world


def promotion(world: dict[str, Any], **fields: Any) -> Promotion:
    return make_promotion(merchant=world["merchant"], **{"name": "test", **fields})


def pay(world: dict[str, Any], amount: int, **kw: Any) -> PaymentIntent:
    kw.setdefault("confirm", True)
    return services.payment_create(
        merchant=world["merchant"],
        cardholder=world["card"].cardholder,
        card=world["card"],
        amount=amount,
        currency="CNY",
        idempotency_key=key(),
        **kw,
    )


def refund(world: dict[str, Any], intent: PaymentIntent, amount: int) -> None:
    services.refund_create(
        merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=key(), amount=amount
    )


def budget(promo: Promotion) -> tuple[int, int]:
    promo.refresh_from_db()
    return promo.committed, promo.uses


def wallet(world: dict[str, Any]) -> int:
    account = cardholder_wallet(cardholder_id=world["card"].cardholder_id, program_id=world["program"].pk)
    assert account is not None
    return account.posted


def clearing(kind: str, owner: int) -> int:
    """A party's CNY clearing balance, in ten-thousandths of a yuan (0 before its first obligation)."""
    account = Account.objects.filter(owner_kind=kind, owner_id=owner, unit="CNY").first()
    return account.posted if account is not None else 0


def floor_share(total: int, part: int, whole: int) -> int:
    return total * part // whole


# --- refunds ----------------------------------------------------------------------------------------------------------


def test_partial_refunds_return_a_discounts_cost_cumulatively_and_exactly(world: dict[str, Any]) -> None:
    promo = promotion(world, kind=Promotion.Kind.PERCENT_OFF, amount_off=None, percent_off=Decimal("15"))
    intent = pay(world, 9_999)
    assert (intent.status, intent.amount, intent.discount_amount) == (Status.SUCCEEDED, 8_500, 1_499)
    use = PromotionUse.objects.get(payment=intent.public_id)
    assert (use.status, use.discount, use.cost, use.counted) == (UseStatus.CONSUMED, 1_499, 1_499, True)
    assert budget(promo) == (1_499, 1)
    refunded = 0
    for amount in (1_000, 2_333, 4_000, 1_167):
        refund(world, intent, amount)
        refunded += amount
        returned = floor_share(1_499, refunded, 8_500)
        use.refresh_from_db()
        assert use.returned_cost == returned, refunded
        # the use holds its count until the payment is refunded whole
        assert budget(promo) == (1_499 - returned, 1 if refunded < 8_500 else 0), refunded
    assert (use.returned_cost, use.cost) == (1_499, 1_499)
    assert budget(promo) == (0, 0)


def test_partial_refunds_return_promotion_points_and_their_obligation_exactly(world: dict[str, Any]) -> None:
    merchant, issuer = world["merchant"], world["issuer"]
    promo = promotion(world, kind=Promotion.Kind.CASHBACK_POINTS, amount_off=None, cashback_rate=Decimal("0.05"))
    intent = pay(world, 9_999)
    earned, given = intent.points_earned, intent.promotion_points
    assert (intent.amount, earned, given) == (9_999, 99, 499)  # 5% of 99.99 = 4.9995 CNY = 499 points at 0.01
    use = PromotionUse.objects.get(payment=intent.public_id)
    assert (use.points, use.cost) == (499, 499)
    assert budget(promo) == (499, 1)
    assert wallet(world) == START_POINTS + earned + given
    assert clearing("merchant", merchant.pk) == -499 * 100  # 4.99 CNY owed to the issuer, in ten-thousandths
    assert clearing("bank", issuer.pk) == 499 * 100
    refunded = 0
    for amount in (3_333, 3_333, 1, 3_332):
        refund(world, intent, amount)
        refunded += amount
        use.refresh_from_db()
        points_back = floor_share(given, refunded, 9_999)
        cost_back = floor_share(499, refunded, 9_999)
        assert (use.returned_points, use.returned_cost) == (points_back, cost_back), refunded
        assert budget(promo) == (499 - cost_back, 1 if refunded < 9_999 else 0), refunded
        card_back = floor_share(earned, refunded, 9_999)
        assert wallet(world) == START_POINTS + earned - card_back + given - points_back, refunded
        owed = floor_share(499 * 100, given - points_back, given)  # the obligation follows the points held
        assert clearing("merchant", merchant.pk) == -owed, refunded
        assert clearing("bank", issuer.pk) == owed, refunded
    assert wallet(world) == START_POINTS
    assert (clearing("merchant", merchant.pk), clearing("bank", issuer.pk)) == (0, 0)
    assert budget(promo) == (0, 0)


def test_a_points_multiplier_and_a_discount_on_one_payment_return_together(world: dict[str, Any]) -> None:
    off = promotion(world, stacking="stackable", priority=2, amount_off=2_000)
    double = promotion(
        world, stacking="stackable", priority=1, kind=Promotion.Kind.POINTS_MULTIPLIER, amount_off=None, multiplier=2
    )
    intent = pay(world, 12_345)
    assert (intent.amount, intent.discount_amount, intent.points_earned, intent.promotion_points) == (
        10_345,
        2_000,
        103,
        103,  # double points on the 103.45 CNY paid
    )
    assert (budget(off), budget(double)) == ((2_000, 1), (103, 1))
    refund(world, intent, 5_000)
    assert (budget(off), budget(double)) == ((2_000 - 2_000 * 5_000 // 10_345, 1), (103 - 103 * 5_000 // 10_345, 1))
    refund(world, intent, 5_345)
    assert (budget(off), budget(double)) == ((0, 0), (0, 0))
    assert wallet(world) == START_POINTS


# --- capture, void, decline -------------------------------------------------------------------------------------------


def test_a_partial_capture_consumes_the_floor_of_its_share_and_hands_back_the_rest(world: dict[str, Any]) -> None:
    promo = promotion(world, per_cardholder_daily=5)
    intent = pay(world, 10_000, capture_method="manual")
    assert (intent.status, intent.amount, intent.discount_amount) == (Status.REQUIRES_CAPTURE, 9_000, 1_000)
    use = PromotionUse.objects.get(payment=intent.public_id)
    assert (use.status, use.cost) == (UseStatus.RESERVED, 1_000)
    assert budget(promo) == (1_000, 1)
    intent = services.payment_capture(
        merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=key(), amount=6_001
    )
    assert intent.amount_captured == 6_001
    use.refresh_from_db()
    share = 1_000 * 6_001 // 9_000  # 666.78 → 666
    assert (use.status, use.discount, use.cost) == (UseStatus.CONSUMED, share, share)
    assert budget(promo) == (share, 1)
    assert intent.promotions[0]["discount"] == share
    refund(world, intent, 6_001)
    use.refresh_from_db()
    assert use.returned_cost == share
    assert budget(promo) == (0, 0)


def test_a_partial_capture_gives_points_on_the_cash_captured(world: dict[str, Any]) -> None:
    promo = promotion(world, kind=Promotion.Kind.CASHBACK_POINTS, amount_off=None, cashback_rate=Decimal("0.1"))
    intent = pay(world, 20_000, capture_method="manual")
    assert intent.promotion_points == 2_000  # priced on the whole authorisation
    assert budget(promo) == (2_000, 1)
    intent = services.payment_capture(
        merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=key(), amount=5_055
    )
    use = PromotionUse.objects.get(payment=intent.public_id)
    assert (use.points, use.cost) == (505, 505)  # 10% of 50.55 CNY = 505.5 points → 505
    assert intent.promotion_points == 505
    assert budget(promo) == (505, 1)
    assert wallet(world) == START_POINTS + intent.points_earned + 505
    assert clearing("merchant", world["merchant"].pk) == -505 * 100


def test_a_same_day_cancel_of_a_captured_payment_returns_everything(world: dict[str, Any]) -> None:
    off = promotion(world, stacking="stackable", priority=2, amount_off=500, per_cardholder_daily=1)
    cashback = promotion(
        world, stacking="stackable", priority=1, kind="cashback_points", amount_off=None, cashback_rate=Decimal("0.02")
    )
    intent = pay(world, 10_000)
    assert (intent.status, intent.amount, intent.promotion_points) == (Status.SUCCEEDED, 9_500, 190)
    assert (budget(off), budget(cashback)) == ((500, 1), (190, 1))
    assert wallet(world) == START_POINTS + intent.points_earned + 190
    intent = services.payment_cancel(merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=key())
    assert intent.status == Status.CANCELED
    assert (budget(off), budget(cashback)) == ((0, 0), (0, 0))
    uses = PromotionUse.objects.filter(payment=intent.public_id)
    assert sorted((u.returned_cost, u.cost, u.returned_points, u.points) for u in uses) == [
        (190, 190, 190, 190),
        (500, 500, 0, 0),
    ]
    assert wallet(world) == START_POINTS
    assert clearing("merchant", world["merchant"].pk) == 0
    # the daily limit of one is free again: the next payment gets the discount
    assert pay(world, 10_000).discount_amount == 500


def test_a_payment_declined_by_the_channel_releases_its_reservation(world: dict[str, Any]) -> None:
    promo = promotion(world, per_cardholder_daily=1, max_uses=1)
    intent = pay(world, 10_051)  # 9,051 to pay: the fake channel declines amounts ending in 51
    assert (intent.status, intent.discount_amount) == (Status.FAILED, 1_000)
    use = PromotionUse.objects.get(payment=intent.public_id)
    assert (use.status, use.counted) == (UseStatus.RELEASED, False)
    assert budget(promo) == (0, 0)
    counter = PromotionCounter.objects.get(promotion=promo)
    assert counter.used == 0
    again = pay(world, 10_000)  # the one use and the cardholder's one a day are there to take again
    assert (again.status, again.discount_amount) == (Status.SUCCEEDED, 1_000)
    assert budget(promo) == (1_000, 1)


def test_a_cancelled_authorisation_releases_its_reservation(world: dict[str, Any]) -> None:
    promo = promotion(world, per_cardholder=1)
    intent = pay(world, 10_000, capture_method="manual")
    assert budget(promo) == (1_000, 1)
    services.payment_cancel(merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=key())
    assert budget(promo) == (0, 0)
    assert PromotionUse.objects.get(payment=intent.public_id).status == UseStatus.RELEASED
    assert pay(world, 10_000).discount_amount == 1_000  # the per-cardholder use is given back


# --- frequency rewards ------------------------------------------------------------------------------------------------


def reward(world: dict[str, Any], **benefit_fields: Any) -> Promotion:
    benefit = make_benefit(pricing=Benefit.Pricing.CNY, price_cny_units=50_000, price_points=None, **benefit_fields)
    return promotion(
        world, kind=Promotion.Kind.FREQUENCY_REWARD, amount_off=None, frequency_count=3, reward_benefit=benefit
    )


def test_the_nth_payment_of_the_month_earns_the_rewards_voucher(world: dict[str, Any]) -> None:
    promo = reward(world)
    holder = world["card"].cardholder_id
    intents = [pay(world, 1_000 + i) for i in range(4)]
    assert [i.promotions[0]["stamp"] for i in intents] == [1, 2, 3, 4]
    assert [i.promotions[0]["voucher"] for i in intents] == [False, False, True, False]
    assert [i.amount for i in intents] == [1_000, 1_001, 1_002, 1_003]  # a reward takes nothing off the price
    uses = {u.payment: u for u in PromotionUse.objects.filter(promotion=promo)}
    third = uses[intents[2].public_id]
    assert third.voucher is not None
    assert (third.voucher.cardholder_id, third.voucher.benefit_id) == (holder, promo.reward_benefit_id)
    assert third.cost == 500  # ¥5.0000 in fen
    assert Voucher.objects.filter(cardholder_id=holder).count() == 1
    assert budget(promo) == (500, 1)  # only the rewarded payment holds a use
    assert all(uses[i.public_id].voucher is None for i in (intents[0], intents[1], intents[3]))


def test_a_sold_out_reward_voucher_does_not_fail_the_capture(world: dict[str, Any]) -> None:
    promo = reward(world, stock_total=0)
    intents = [pay(world, 1_000) for _ in range(3)]
    assert [i.status for i in intents] == [Status.SUCCEEDED] * 3
    third = PromotionUse.objects.get(payment=intents[2].public_id)
    assert (third.status, third.voucher, third.cost) == (UseStatus.CONSUMED, None, 0)
    assert intents[2].promotions[0]["voucher"] is False
    assert Voucher.objects.filter(cardholder_id=world["card"].cardholder_id).count() == 0
    assert budget(promo) == (0, 0)  # nothing given, nothing spent


# --- the retry: a budget taken between pricing and reserving ------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_promotion_spent_between_pricing_and_reserving_is_left_out_and_the_payment_goes_through(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    promo = promotion(world, budget=5_000, max_uses=100)
    other = promotion(world, stacking="stackable", priority=-1, amount_off=100, budget=5_000)
    real_price = engine.price
    priced: list[list[int]] = []

    def racing_price(ctx: engine.Context, **kw: Any) -> engine.Pricing:
        pricing = real_price(ctx, **kw)
        priced.append([line.rule.id for line in pricing.lines])
        if len(priced) == 1:  # another payment takes the whole budget on its own connection, and commits
            Background(lambda: Promotion.objects.filter(pk=promo.pk).update(committed=F("budget"))).result()
        return pricing

    monkeypatch.setattr(engine, "price", racing_price)
    intent = pay(world, 10_000)
    assert priced == [[promo.pk], [other.pk]]  # priced again without it: the stackable one now applies
    assert (intent.status, intent.amount, intent.discount_amount) == (Status.SUCCEEDED, 9_900, 100)
    assert [line["promotion"] for line in intent.promotions] == [other.public_id]
    assert "budget_exhausted" not in str(intent.promotions)
    assert list(PromotionUse.objects.filter(promotion=promo)) == []  # the rolled-back reservation left nothing
    assert budget(promo) == (5_000, 0)  # the other payment's, untouched
    assert budget(other) == (100, 1)


def test_a_released_use_gives_back_one_count_of_the_cardholders_limits(world: dict[str, Any]) -> None:
    promo = promotion(world, per_cardholder_daily=2, per_cardholder=3)
    first = pay(world, 10_000)
    assert first.discount_amount == 1_000
    declined = pay(world, 10_051)
    assert (declined.status, declined.discount_amount) == (Status.FAILED, 1_000)
    counters = dict(PromotionCounter.objects.filter(promotion=promo).values_list("period", "used"))
    assert counters == {"": 1, timezone.localdate().isoformat(): 1}  # the first payment's count stays
    assert [pay(world, 10_000).discount_amount for _ in range(2)] == [1_000, 0]  # two a day, not three
    assert budget(promo) == (2_000, 2)


def test_a_declined_payment_gives_its_stamp_back(world: dict[str, Any]) -> None:
    promo = reward(world)
    assert pay(world, 1_051).status == Status.FAILED
    assert [pay(world, 1_000).promotions[0]["stamp"] for _ in range(3)] == [1, 2, 3]
    month = timezone.localdate().strftime("%Y-%m")
    assert PromotionCounter.objects.get(promotion=promo, period=month).used == 3
