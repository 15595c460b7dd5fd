"""Paying through the API with what the cardholder granted: a payment code shown at the till, an agreement, points."""

from __future__ import annotations

import pytest

from payments import methods
from tests.api.conftest import World, agreement_body, idem, new_api
from tests.factories import card_agreement

pytestmark = pytest.mark.django_db


def test_payment_code_pays_once_and_live_keys_may_use_it(world: World) -> None:
    live = new_api(world.merchant, mode="live")
    code = methods.payment_code_generate(cardholder=world.card.cardholder, card=world.card).code
    status, quote = live.post(
        "payments/quote", {"amount": 5_000, "currency": "CNY", "payment_method": {"type": "payment_code", "code": code}}
    )
    assert (status, quote["points_to_earn"]) == (200, 100)
    body = {
        "amount": 5_000,
        "currency": "CNY",
        "confirm": True,
        "payment_method": {"type": "payment_code", "code": code},
    }
    status, payment = live.post("payments", body, key=idem())
    assert (status, payment["status"], payment["points_earned"]) == (201, "succeeded", 100)
    status, replay = live.post("payments", body, key=idem())
    assert status == 409
    assert replay["error"]["code"] == "payment_code_used"


def test_bad_payment_code_input_is_refused_cleanly(world: World) -> None:
    for method, param in (
        ({"type": "payment_code"}, "payment_method.code"),
        ({"type": "payment_code", "code": "12345678901234567x"}, "payment_method.code"),
        ({"type": "payment_code", "code": "²" * 18}, "payment_method.code"),  # digits int() refuses
        ({"type": "payment_code", "code": "٣" * 18}, "payment_method.code"),  # another script's digits
        ({"type": "agreement"}, "payment_method.token"),
    ):
        status, body = world.api.post(
            "payments", {"amount": 100, "currency": "CNY", "payment_method": method}, key=idem()
        )
        assert status == 400, body
        assert body["error"]["param"] == param


def test_agreement_is_useless_to_another_merchant(world: World, other: World) -> None:
    granted = card_agreement(world.card, world.merchant, per_payment=10_000, per_month=50_000)
    body = {
        "amount": 3_000,
        "currency": "CNY",
        "confirm": True,
        "payment_method": {"type": "agreement", "token": granted.token},
    }
    status, payment = world.api.post("payments", body, key=idem())
    assert (status, payment["status"]) == (201, "succeeded")
    status, refused = other.api.post("payments", body, key=idem())
    assert status == 404
    assert refused["error"]["code"] == "agreement_invalid"  # the same answer as for a made-up token
    status, over = world.api.post("payments", {**body, "amount": 10_001}, key=idem())
    assert (status, over["error"]["code"]) == (422, "agreement_limit_exceeded")


def test_points_part_payment_through_the_api(world: World) -> None:
    from members.models import PointsProgram
    from rewards.services import points_earn

    program = PointsProgram.objects.get(bank=world.issuer)
    points_earn(cardholder_id=world.card.cardholder_id, program=program, amount=2_000, idempotency_key="seed-points")
    body = agreement_body(world.card, world.merchant, 10_000, use_points=2_000)
    status, payment = new_api(world.merchant, mode="live").post("payments", body, key=idem())
    assert status == 201, payment
    # 2,000 points at 0.005 CNY pay 10.00 CNY; the card pays the other 90.00 and earns on that cash only.
    assert (payment["amount"], payment["amount_captured"], payment["points_earned"]) == (9_000, 9_000, 180)
