"""A payment priced with its merchant's promotions: reserved on create, consumed on capture, released on failure,
returned cumulatively by refunds."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import pytest

from payments import services
from payments.models import PaymentIntent
from rewards.models import Promotion, PromotionUse
from tests.factories import (
    make_promotion,
)

pytestmark = pytest.mark.django_db
_keys = itertools.count()
Status = PaymentIntent.Status


def key() -> str:
    return f"promo-{next(_keys)}"


@pytest.fixture
def world(points_world: dict[str, Any]) -> dict[str, Any]:
    return points_world


def promotion(world: dict[str, Any], **fields: Any) -> Promotion:
    return make_promotion(merchant=world["merchant"], **{"name": "test", **fields})


def pay(world: dict[str, Any], amount: int, **kw: Any) -> PaymentIntent:
    return services.payment_create(
        merchant=world["merchant"],
        cardholder=world["card"].cardholder,
        card=world["card"],
        amount=amount,
        currency="CNY",
        idempotency_key=key(),
        confirm=True,
        **kw,
    )


def test_amount_off_is_charged_less_consumed_on_capture_and_returned_by_refunds(world: dict[str, Any]) -> None:
    promo = promotion(world)
    intent = pay(world, 10_000)
    assert (intent.status, intent.amount, intent.discount_amount) == (Status.SUCCEEDED, 9_000, 1_000)
    assert intent.points_earned == 90  # earned on the 90.00 paid, not on the 100.00 asked
    use = PromotionUse.objects.get(payment=intent.public_id)
    assert (use.status, use.discount, use.cost) == (PromotionUse.Status.CONSUMED, 1_000, 1_000)
    promo.refresh_from_db()
    assert (promo.committed, promo.uses) == (1_000, 1)
    for amount in (3_001, 2_999, 3_000):
        services.refund_create(
            merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=key(), amount=amount
        )
    use.refresh_from_db()
    promo.refresh_from_db()
    assert use.returned_cost == 1_000
    assert (promo.committed, promo.uses) == (0, 0)


def test_a_points_multiplier_gives_merchant_funded_points_on_capture(world: dict[str, Any]) -> None:
    promotion(world, kind=Promotion.Kind.POINTS_MULTIPLIER, amount_off=None, multiplier=Decimal("3"))
    intent = pay(world, 10_000)
    assert (intent.amount, intent.points_earned, intent.promotion_points) == (10_000, 100, 200)
    use = PromotionUse.objects.get(payment=intent.public_id)
    assert (use.points, use.cost) == (200, 200)  # 200 points at 0.01 CNY = 2.00 CNY


def test_a_payment_cancelled_before_confirmation_releases_its_reservation(world: dict[str, Any]) -> None:
    promo = promotion(world)
    intent = services.payment_create(
        merchant=world["merchant"],
        cardholder=world["card"].cardholder,
        card=world["card"],
        amount=10_000,
        currency="CNY",
        idempotency_key=key(),
    )
    promo.refresh_from_db()
    assert (promo.committed, promo.uses) == (1_000, 1)
    services.payment_cancel(merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=key())
    promo.refresh_from_db()
    assert (promo.committed, promo.uses) == (0, 0)
    assert PromotionUse.objects.get(payment=intent.public_id).status == PromotionUse.Status.RELEASED


@pytest.mark.parametrize("capture", [None, 5_000])
def test_the_co_funding_banks_part_is_the_floor_of_its_share_whole_or_partly_captured(
    world: dict[str, Any], capture: int | None
) -> None:
    stackable = {"stacking": Promotion.Stacking.STACKABLE}
    cofunded = promotion(
        world,
        amount_off=1_001,
        cofunder=world["issuer"],
        cofunder_share=Decimal("0.3333"),
        cofunding=Promotion.Cofunding.APPROVED,
        **stackable,
    )
    plain = promotion(world, amount_off=500, priority=-1, **stackable)
    intent = pay(world, 10_000, capture_method="manual")
    assert intent.amount == 8_499
    services.payment_capture(
        merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=key(), amount=capture
    )
    uses = {use.promotion_id: use for use in PromotionUse.objects.filter(payment=intent.public_id)}
    assert {use.status for use in uses.values()} == {PromotionUse.Status.CONSUMED}
    # A whole capture keeps 1,001, of which the bank bears floor(333.6333) = 333; a partial one keeps
    # floor(1,001 × 5,000 / 8,499) = 588, of which floor(195.98…) = 195.
    kept = (1_001, 333) if capture is None else (588, 195)
    assert (uses[cofunded.pk].cost, uses[cofunded.pk].cofunder_cost) == kept
    assert (uses[plain.pk].cost, uses[plain.pk].cofunder_cost) == ((500, 0) if capture is None else (294, 0))
