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


def pay(world: dict[str, Any], key: str, amount: int, **options: Any) -> PaymentIntent:
    return services.payment_create(
        merchant=world["merchant"],
        cardholder=world["card"].cardholder,
        card=world["card"],
        amount=amount,
        currency="CNY",
        idempotency_key=key,
        **options,
    )


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
    intent = pay(world, "race-create-2", 1_000, confirm=True)
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
        lambda i: pay(world, "same-key", 777, confirm=True),
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


def _blocking_channel(fake: Any, monkeypatch: Any, method: str) -> tuple[Any, Any]:
    """Makes the fake channel's `method` wait, inside the call, until released: (entered, release) events."""
    import threading

    entered, release = threading.Event(), threading.Event()
    real = getattr(fake, method)

    def slow(request: Any) -> Any:
        entered.set()
        assert release.wait(30), "never released"
        return real(request)

    monkeypatch.setattr(fake, method, slow)
    return entered, release


def test_the_resolver_never_acts_on_an_attempt_a_request_is_waiting_on(world: dict[str, Any], monkeypatch: Any) -> None:
    """A request waits on its channel past the resolver's cutoff: the resolver, run meanwhile on another connection,
    leaves the attempt alone (the request holds its claim) — no inquiry, no reversal — and the request then records
    its charge: one charge, captured once."""
    import datetime as dt
    import threading

    from django.db import connection

    fake = world["fake"]
    entered, release = _blocking_channel(fake, monkeypatch, "authorize")
    asked: list[str] = []
    for name in ("inquire", "reverse"):
        real = getattr(fake, name)
        monkeypatch.setattr(fake, name, lambda request, name=name, real=real: asked.append(name) or real(request))
    outcome: dict[str, Any] = {}

    def slow_payment() -> None:
        try:
            outcome["payment"] = pay(world, "slow-channel", 5_000, confirm=True)
        finally:
            connection.close()

    request = threading.Thread(target=slow_payment)
    request.start()
    assert entered.wait(30)
    report = services.attempts_resolve(older_than=dt.timedelta(0))  # every attempt is "old enough"
    assert (report.examined, report.charged, report.not_charged) == (0, 0, 0)
    assert PaymentIntent.objects.get().status == "processing"
    release.set()
    request.join(30)
    assert outcome["payment"].status == "succeeded"
    assert asked == []  # the resolver asked the channel nothing about the request's attempt
    assert fake.charge_count() == 1
    assert services.attempts_resolve(older_than=dt.timedelta(0)).examined == 0  # nothing left open


def test_a_payment_stopped_after_its_decline_was_recorded_is_failed_by_the_resolver(world: dict[str, Any]) -> None:
    """The decline is recorded on the attempt, and the step that fails the payment never ran (an error between the
    two): the resolver fails it, with the decline's code."""
    import datetime as dt

    from django.utils import timezone

    from payments.models import PaymentAttempt

    intent = pay(world, "declined-then-lost", 5_000)
    PaymentIntent.objects.filter(pk=intent.pk).update(
        status="processing", updated_at=timezone.now() - dt.timedelta(minutes=5)
    )
    channel = intent.merchant.sponsor_bank.channels.get()
    PaymentAttempt.objects.create(
        intent=intent, sequence=1, channel=channel, reference=f"{intent.public_id}-1", amount=5_000, currency="CNY",
        intent_created_at=intent.created_at, status="declined", error_code="insufficient_funds",
        resolved_at=timezone.now(),
    )  # fmt: skip
    services.attempts_resolve()
    intent.refresh_from_db()
    assert (intent.status, intent.failure_code) == ("failed", "insufficient_funds")
