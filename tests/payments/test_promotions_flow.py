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
