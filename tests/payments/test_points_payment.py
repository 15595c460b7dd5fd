"""Paying part of a payment with points (积分抵现): held at create, spent on capture, given back otherwise."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from core.errors import InsufficientFunds, ValidationFailed
from payments import methods, services
from payments.models import PaymentIntent
from rewards.models import Account, Hold

pytestmark = pytest.mark.django_db
_keys = itertools.count()
Status = PaymentIntent.Status


def key() -> str:
    return f"pts-{next(_keys)}"


@pytest.fixture
def world(points_world: dict[str, Any]) -> dict[str, Any]:
    return points_world


def wallet(world: dict[str, Any]) -> tuple[int, int]:
    account = Account.objects.get(
        owner_kind="cardholder", owner_id=world["card"].cardholder_id, purpose="points", program=world["program"]
    )
    return account.posted, account.held


def pay(world: dict[str, Any], amount: int, points: int, **kw: Any) -> PaymentIntent:
    return services.payment_create(
        merchant=world["merchant"],
        cardholder=world["card"].cardholder,
        card=world["card"],
        amount=amount,
        currency="CNY",
        idempotency_key=key(),
        confirm=True,
        use_points=points,
        **kw,
    )


def test_points_pay_part_and_only_the_cash_part_earns(world: dict[str, Any]) -> None:
    intent = pay(world, 5_000, 1_000)  # 1,000 points at 0.01 CNY = 10.00 CNY; 40.00 CNY in cash
    assert (intent.status, intent.amount, intent.points_used, intent.points_amount) == (
        Status.SUCCEEDED,
        4_000,
        1_000,
        1_000,
    )
    assert intent.attempts.get().amount == 4_000
    assert intent.points_earned == 40  # 40.00 CNY cash at 1 point per yuan
    assert wallet(world) == (2_000 - 1_000 + 40, 0)
    assert Hold.objects.get(pk=intent.points_hold_id).status == Hold.Status.POSTED


def test_a_declined_payment_gives_the_points_back(world: dict[str, Any]) -> None:
    intent = pay(world, 5_051, 1_000)  # cash 40.51: the channel declines …51
    assert intent.status == Status.FAILED
    assert wallet(world) == (2_000, 0)
    assert Hold.objects.get(pk=intent.points_hold_id).status == Hold.Status.VOIDED


def test_points_are_held_until_capture_and_released_by_a_void(world: dict[str, Any]) -> None:
    intent = pay(world, 5_000, 500, capture_method="manual")
    assert intent.status == Status.REQUIRES_CAPTURE
    assert wallet(world) == (2_000, 500)
    services.payment_cancel(merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=key())
    assert wallet(world) == (2_000, 0)


def test_refunds_give_points_back_cumulatively(world: dict[str, Any]) -> None:
    intent = pay(world, 5_000, 999)  # 9.99 CNY in points, 40.01 CNY cash
    assert wallet(world) == (2_000 - 999 + 40, 0)
    for amount in (1_333, 1_333):
        services.refund_create(
            merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=key(), amount=amount
        )
    # points returned so far: floor(999 × 2666 / 4001) = 665; earned points reversed: floor(40 × 2666 / 4001) = 26
    assert wallet(world) == (2_000 - 999 + 40 + 665 - 26, 0)
    services.refund_create(merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=key())
    assert wallet(world) == (2_000, 0)


def test_not_enough_points_creates_nothing(world: dict[str, Any]) -> None:
    with pytest.raises(InsufficientFunds):
        pay(world, 50_000, 2_001)
    assert not PaymentIntent.objects.exists()
    assert wallet(world) == (2_000, 0)


def test_points_cannot_pay_everything(world: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailed) as error:
        pay(world, 1_000, 1_000)
    assert error.value.code == "points_exceed_amount"
    assert not PaymentIntent.objects.exists()


def test_payment_code_with_points_uses_as_many_as_it_can(world: dict[str, Any]) -> None:
    code = methods.payment_code_generate(cardholder=world["card"].cardholder, card=world["card"], use_points=True)
    intent = services.payment_create(
        merchant=world["merchant"],
        payment_code=code.code,
        amount=1_500,
        currency="CNY",
        idempotency_key=key(),
        confirm=True,
    )
    assert (intent.points_used, intent.points_amount, intent.amount) == (1_499, 1_499, 1)
    assert wallet(world) == (2_000 - 1_499, 0)


def test_a_partial_capture_spends_the_same_share_of_the_points(world: dict[str, Any]) -> None:
    intent = pay(world, 5_000, 1_000, capture_method="manual")  # 40.00 CNY cash authorised, 1,000 points held
    assert wallet(world) == (2_000, 1_000)
    captured = services.payment_capture(
        merchant=world["merchant"], payment_id=intent.public_id, amount=3_000, idempotency_key=key()
    )
    # 30.00 of 40.00 CNY captured: 750 of the 1,000 points are spent, 250 go back; 30 points earned on the cash.
    assert (captured.status, captured.amount_captured, captured.points_earned) == (Status.SUCCEEDED, 3_000, 30)
    assert wallet(world) == (2_000 - 750 + 30, 0)
    assert Hold.objects.get(pk=intent.points_hold_id).status == Hold.Status.POSTED
