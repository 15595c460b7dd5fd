"""Payments end to end over real HTTP against the channel simulator: every fault ends in a known state."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from payments import services
from payments.models import PaymentAttempt, PaymentIntent
from tests.factories import (
    CardFactory,
    CardProductFactory,
    ChannelFactory,
    MemberBankFactory,
    MerchantFactory,
    PointsProgramFactory,
)

pytestmark = pytest.mark.django_db
_keys = itertools.count()


@pytest.fixture
def shop(sim: Any) -> dict[str, Any]:
    issuer, acquirer_a, acquirer_b = MemberBankFactory(), MemberBankFactory(), MemberBankFactory()
    PointsProgramFactory(bank=issuer)
    card = CardFactory(product=CardProductFactory(bank=issuer, earning_rates={"other": "1"}))
    merchant = MerchantFactory(sponsor_bank=acquirer_a, spend_category="other")
    common = {"connector": "simulator", "breaker_cooldown_seconds": 1}
    primary = ChannelFactory(
        code="unionpay-a", remote_id="acq-unionpay-a", acquirer=acquirer_a, fee_percent="0.3", **common
    )
    backup = ChannelFactory(
        code="bank-b",
        remote_id="acq-bank-b",
        acquirer=acquirer_b,
        fee_percent="0.5",
        currencies=["CNY", "HKD"],
        **common,
    )
    return {"card": card, "merchant": merchant, "sim": sim, "primary": primary, "backup": backup}


def pay(shop: dict[str, Any], amount: int, **kw: Any) -> PaymentIntent:
    return services.payment_create(
        merchant=shop["merchant"],
        cardholder=shop["card"].cardholder,
        card=shop["card"],
        amount=amount,
        currency=kw.pop("currency", "CNY"),
        idempotency_key=f"e2e-{next(_keys)}",
        confirm=True,
        **kw,
    )


def live_charges(sim: Any, intent: PaymentIntent) -> list[dict[str, Any]]:
    """The simulator's own view: charges still standing for this payment's attempts, on every channel."""
    standing = []
    for attempt in intent.attempts.select_related("channel"):
        status = sim.payment_status(channel=attempt.channel.remote_id, reference=attempt.reference)
        if status.state in ("authorised", "captured", "partially_refunded"):
            standing.append(
                {"channel": attempt.channel.remote_id, "state": status.state, "captured": status.captured_amount}
            )
    return standing


def test_card_payment_captured_once_and_on_the_statement(shop: dict[str, Any]) -> None:
    intent = pay(shop, 12_000)
    assert (intent.status, intent.channel.code, intent.points_earned) == ("succeeded", "unionpay-a", 120)
    assert live_charges(shop["sim"], intent) == [{"channel": "acq-unionpay-a", "state": "captured", "captured": 12_000}]
    rows = shop["sim"].journal_all(channel="acq-unionpay-a", reference=f"{intent.public_id}-1")
    assert [row["op"] for row in rows if row["op"] != "inquiry"] == ["sale"]
    statement = shop["sim"].statement(channel="acq-unionpay-a", date=rows[0]["business_date"])
    assert f"{intent.public_id}-1" in statement
    # The channel's statement date, moved to a working day, is the settlement (business) date we stamp.
    from datetime import date

    from core.calendar import load_calendar

    channel_day = date.fromisoformat(rows[0]["business_date"])
    assert intent.business_date == load_calendar().working_day_on_or_after(channel_day)


def test_manual_capture_partial_then_refunds_against_the_simulator(shop: dict[str, Any]) -> None:
    intent = pay(shop, 10_000, capture_method="manual")
    assert intent.status == "requires_capture"
    captured = services.payment_capture(
        merchant=shop["merchant"], payment_id=intent.public_id, amount=8_000, idempotency_key="cap"
    )
    assert (captured.status, captured.amount_captured) == ("succeeded", 8_000)
    for amount in (3_000, 5_000):
        refund = services.refund_create(
            merchant=shop["merchant"], payment_id=intent.public_id, amount=amount, idempotency_key=f"r{amount}"
        )
        assert refund.status == "succeeded"
    status = shop["sim"].payment_status(channel="acq-unionpay-a", reference=f"{intent.public_id}-1")
    assert (status.state, status.captured_amount, status.refunded_amount) == ("refunded", 8_000, 8_000)
    intent.refresh_from_db()
    assert (intent.amount_refunded, intent.points_reversed, intent.points_earned) == (8_000, 80, 80)


@pytest.mark.parametrize(
    ("amount", "status", "code", "attempts"),
    [
        (10_051, "failed", "do_not_honour", [("unionpay-a", "declined")]),
        (10_052, "failed", "insufficient_funds", [("unionpay-a", "declined")]),
        (10_056, "failed", "suspected_fraud", [("unionpay-a", "declined")]),
    ],
)
def test_declines_fail_without_fallback(
    shop: dict[str, Any], amount: int, status: str, code: str, attempts: list[tuple[str, str]]
) -> None:
    intent = pay(shop, amount)
    assert (intent.status, intent.failure_code) == (status, code)
    assert list(intent.attempts.values_list("channel__code", "status")) == attempts
    assert live_charges(shop["sim"], intent) == []


def test_channel_error_falls_back_and_charges_once(shop: dict[str, Any]) -> None:
    shop["sim"].set_faults("acq-bank-b", triggers=False)  # only the primary meets the amount trigger
    intent = pay(shop, 10_053)  # acq-unionpay-a answers 500 "nothing was charged"
    assert intent.status == "succeeded"
    assert list(intent.attempts.values_list("channel__code", "status")) == [
        ("unionpay-a", "failed"),
        ("bank-b", "captured"),
    ]
    assert len(live_charges(shop["sim"], intent)) == 1


def test_timeout_before_charge_is_resolved_then_falls_back(shop: dict[str, Any]) -> None:
    shop["sim"].set_faults("acq-bank-b", triggers=False)
    intent = pay(shop, 10_054)
    assert intent.status == "succeeded"
    assert list(intent.attempts.values_list("channel__code", "status")) == [
        ("unionpay-a", "failed"),
        ("bank-b", "captured"),
    ]
    assert [c["channel"] for c in live_charges(shop["sim"], intent)] == ["acq-bank-b"]


def test_charged_then_timeout_is_adopted_never_charged_twice(shop: dict[str, Any]) -> None:
    intent = pay(shop, 10_055)
    assert intent.status == "succeeded"
    assert list(intent.attempts.values_list("channel__code", "status")) == [("unionpay-a", "captured")]
    assert live_charges(shop["sim"], intent) == [{"channel": "acq-unionpay-a", "state": "captured", "captured": 10_055}]
    assert intent.points_earned == 100


def test_channel_down_opens_the_breaker_and_traffic_moves(shop: dict[str, Any]) -> None:
    from payments.routing import load_config

    shop["primary"].breaker_consecutive_failures = 2
    shop["primary"].save()
    services.routing_config_changed()
    shop["sim"].set_faults("acq-unionpay-a", down=True)
    results = [pay(shop, 1_000 + i) for i in range(3)]
    assert [r.status for r in results] == ["succeeded"] * 3
    assert [r.attempts.count() for r in results] == [2, 2, 1]  # third payment: breaker open, primary skipped
    from payments.health import health_store

    policy = load_config().channels[shop["primary"].pk].breaker
    assert health_store().state("unionpay-a", policy) == "open"


def test_orphan_charge_at_the_channel_is_found_and_reversed(shop: dict[str, Any]) -> None:
    known = pay(shop, 2_000)
    shop["sim"].authorise(
        channel="acq-unionpay-a",
        reference="ghost-77",
        amount=999,
        currency="CNY",
        instrument={"kind": "card", "token": "tok-ghost"},
        capture=True,
    )
    report = services.orphans_sweep(channel=shop["primary"])
    assert (report.orphans_reversed, report.orphans_unresolved) == (1, 0)
    assert shop["sim"].payment_status(channel="acq-unionpay-a", reference="ghost-77").state == "reversed"
    assert len(live_charges(shop["sim"], known)) == 1


def test_jpy_amounts_have_no_minor_unit(shop: dict[str, Any]) -> None:
    intent = pay(shop, 1_000, currency="JPY")
    assert (intent.status, intent.amount_captured) == ("succeeded", 1_000)
    status = shop["sim"].payment_status(channel="acq-unionpay-a", reference=f"{intent.public_id}-1")
    assert (status.currency, status.captured_amount) == ("JPY", 1_000)


def test_void_same_day_releases_the_charge(shop: dict[str, Any]) -> None:
    intent = pay(shop, 3_000, capture_method="manual")
    canceled = services.payment_cancel(merchant=shop["merchant"], payment_id=intent.public_id, idempotency_key="v")
    assert canceled.status == "canceled"
    assert live_charges(shop["sim"], intent) == []
    assert PaymentAttempt.objects.get(intent=intent).status == "voided"


def test_same_day_cancel_of_a_captured_payment_reverses_it(shop: dict[str, Any]) -> None:
    intent = pay(shop, 6_000)
    canceled = services.payment_cancel(merchant=shop["merchant"], payment_id=intent.public_id, idempotency_key="x")
    assert (canceled.status, canceled.points_reversed) == ("canceled", 60)
    status = shop["sim"].payment_status(channel="acq-unionpay-a", reference=f"{intent.public_id}-1")
    assert (status.state, status.reversed_amount) == ("reversed", 6_000)
    assert PaymentAttempt.objects.get(intent=intent).status == "reversed"
