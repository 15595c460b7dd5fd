"""The merchant API end to end over the channel simulator: the quickstart's flow and the sandbox triggers."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import agreement_body, idem, new_api
from tests.factories import (
    CardFactory,
    CardProductFactory,
    ChannelFactory,
    MemberBankFactory,
    MerchantFactory,
    PointsProgramFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(sim: Any) -> dict[str, Any]:
    issuer, acquirer = MemberBankFactory(), MemberBankFactory()
    PointsProgramFactory(bank=issuer)
    card = CardFactory(product=CardProductFactory(bank=issuer, earning_rates={"other": "1"}))
    merchant = MerchantFactory(sponsor_bank=acquirer, spend_category="other")
    ChannelFactory(
        code="unionpay-a", remote_id="acq-unionpay-a", acquirer=acquirer, connector="simulator", fee_percent="0.3"
    )
    # Live: the payments earn points and the refunds reverse them (a test-mode payment earns none).
    return {"api": new_api(merchant, mode="live"), "card": card, "merchant": merchant, "sim": sim}


def body(shop: dict[str, Any], amount: int, **extra: Any) -> dict[str, Any]:
    return agreement_body(shop["card"], shop["merchant"], amount, **extra)


def test_authorise_capture_refund_over_the_simulator(shop: dict[str, Any]) -> None:
    api = shop["api"]
    status, held = api.post("payments", body(shop, 12_000, capture_method="manual"), key=idem())
    assert (status, held["status"]) == (201, "requires_capture")
    status, captured = api.post(f"payments/{held['id']}/capture", {"amount": 10_000}, key=idem())
    assert (status, captured["status"], captured["amount_captured"], captured["points_earned"]) == (
        200,
        "succeeded",
        10_000,
        100,
    )
    status, refund = api.post("refunds", {"payment": held["id"], "amount": 2_500}, key=idem())
    assert (status, refund["status"], refund["points_reversed"]) == (201, "succeeded", 25)
    charged = shop["sim"].payment_status(channel="acq-unionpay-a", reference=f"{held['id']}-1")
    assert charged.captured_amount == 10_000


@pytest.mark.parametrize(("amount", "status"), [(10_051, "failed"), (10_052, "failed"), (10_055, "succeeded")])
def test_sandbox_triggers(shop: dict[str, Any], amount: int, status: str) -> None:
    code, payment = shop["api"].post("payments", body(shop, amount), key=idem())
    assert (code, payment["status"]) == (201, status)
    if status == "failed":
        assert payment["failure_code"]
