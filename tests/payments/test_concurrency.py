"""Races on PostgreSQL with real parallel connections: a capture happens once; refunds never exceed the capture."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import Conflict, MengkaError
from payments import services
from payments.models import PaymentIntent, Refund
from tests.concurrency import run_parallel
from tests.factories import (
    CardFactory,
    CardProductFactory,
    ChannelFactory,
    MemberBankFactory,
    MerchantFactory,
    PointsProgramFactory,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world(channel_fake: Any) -> dict[str, Any]:
    bank = MemberBankFactory()
    PointsProgramFactory(bank=bank)
    card = CardFactory(product=CardProductFactory(bank=bank))
    merchant = MerchantFactory(sponsor_bank=bank)
    ChannelFactory(acquirer=bank, code="acq-race")
    return {"card": card, "merchant": merchant, "fake": channel_fake}


def test_racing_captures_capture_once(world: dict[str, Any]) -> None:
    intent = services.payment_create(
        merchant=world["merchant"],
        cardholder=world["card"].cardholder,
        card=world["card"],
        amount=5_000,
        currency="CNY",
        capture_method="manual",
        idempotency_key="race-create",
        confirm=True,
    )
    results = run_parallel(
        8,
        lambda i: services.payment_capture(
            merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=f"cap-{i}"
        ),
    )
    successes = [r for r in results if isinstance(r, PaymentIntent)]
    conflicts = [r for r in results if isinstance(r, Conflict)]
    assert len(successes) == 1
    assert len(conflicts) == 7
    intent.refresh_from_db()
    assert (intent.status, intent.amount_captured) == ("succeeded", 5_000)
    assert [c for c in world["fake"].calls if c[0] == "capture"] == [("capture", f"{intent.public_id}-1")]


def test_racing_refunds_never_exceed_the_capture(world: dict[str, Any]) -> None:
    intent = services.payment_create(
        merchant=world["merchant"],
        cardholder=world["card"].cardholder,
        card=world["card"],
        amount=1_000,
        currency="CNY",
        idempotency_key="race-create-2",
        confirm=True,
    )
    results = run_parallel(
        10,
        lambda i: services.refund_create(
            merchant=world["merchant"], payment_id=intent.public_id, amount=200, idempotency_key=f"ref-{i}"
        ),
    )
    succeeded = [r for r in results if isinstance(r, Refund) and r.status == "succeeded"]
    refused = [r for r in results if isinstance(r, MengkaError)]
    assert len(succeeded) == 5
    assert len(refused) == 5
    intent.refresh_from_db()
    assert (intent.amount_refunded, intent.amount_refund_reserved) == (1_000, 1_000)
    assert intent.points_reversed == intent.points_earned > 0
    from rewards.models import Account

    assert sum(Account.objects.filter(owner_kind="cardholder", purpose="points").values_list("posted", flat=True)) == 0


def test_one_idempotency_key_used_concurrently_runs_once(world: dict[str, Any]) -> None:
    results = run_parallel(
        6,
        lambda i: services.payment_create(
            merchant=world["merchant"],
            cardholder=world["card"].cardholder,
            card=world["card"],
            amount=777,
            currency="CNY",
            idempotency_key="same-key",
            confirm=True,
        ),
    )
    assert PaymentIntent.objects.count() == 1
    assert world["fake"].charge_count() == 1
    for result in results:
        assert isinstance(result, PaymentIntent | Conflict), result


def test_one_payment_code_shown_to_eight_tills_at_once_pays_once(world: dict[str, Any]) -> None:
    from payments import methods

    code = methods.payment_code_generate(cardholder=world["card"].cardholder, card=world["card"])
    results = run_parallel(
        8,
        lambda i: services.payment_create(
            merchant=world["merchant"],
            amount=1_000,
            currency="CNY",
            payment_code=code.code,
            idempotency_key=f"till-{i}",
            confirm=True,
        ),
    )
    paid = [r for r in results if isinstance(r, PaymentIntent)]
    refused = [r for r in results if isinstance(r, Conflict)]
    assert len(paid) == 1
    assert len(refused) == 7
    assert {r.code for r in refused} == {"payment_code_used"}
    assert PaymentIntent.objects.filter(payment_code=code).count() == 1
    assert [c for c in world["fake"].calls if c[0] == "authorize"] == [("authorize", f"{paid[0].public_id}-1")]
