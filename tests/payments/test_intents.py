"""Payment intents over the in-process channel: the state machine, faults, refunds and points, idempotency."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
from django.utils import timezone

from core.errors import ChannelError, Conflict, IdempotencyConflict, NotFound, ValidationFailed
from payments import services
from payments.models import PaymentAttempt, PaymentIntent, Refund
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


def key() -> str:
    return f"idem-{next(_keys)}"


@pytest.fixture
def world(channel_fake: Any) -> dict[str, Any]:
    issuer = MemberBankFactory()
    acquirer = MemberBankFactory()
    PointsProgramFactory(bank=issuer)
    card = CardFactory(product=CardProductFactory(bank=issuer, earning_rates={"dining": "2", "other": "1"}))
    merchant = MerchantFactory(sponsor_bank=acquirer, spend_category="dining")
    channel = ChannelFactory(acquirer=acquirer, code="acq-main")
    return {"card": card, "merchant": merchant, "channel": channel, "fake": channel_fake, "issuer": issuer}


def wallet(world: dict[str, Any]) -> int:
    """The cardholder's posted points in the issuer's programme, from the ledger itself."""
    from rewards.models import Account

    account = Account.objects.filter(owner_kind="cardholder", owner_id=world["card"].cardholder_id, purpose="points")
    return sum(account.values_list("posted", flat=True))


def pay(world: dict[str, Any], amount: int, *, capture: str = "automatic", currency: str = "CNY", **kw: Any) -> Any:
    return services.payment_create(
        merchant=world["merchant"],
        cardholder=world["card"].cardholder,
        card=world["card"],
        amount=amount,
        currency=currency,
        capture_method=capture,
        idempotency_key=key(),
        confirm=True,
        **kw,
    )


def test_automatic_capture_succeeds_with_business_date_acquirer_and_points(world: dict[str, Any]) -> None:
    intent = pay(world, 12_345)
    assert intent.status == PaymentIntent.Status.SUCCEEDED
    assert (intent.amount_captured, intent.amount_capturable) == (12_345, 0)
    assert intent.acquirer == world["channel"].acquirer
    assert intent.issuer == world["issuer"]
    assert intent.business_date is not None
    # 123.45 CNY at 2 points per yuan for dining → 246 points (floor).
    assert intent.points_earned == 246
    assert wallet(world) == 246  # posted in the issuer's programme through the ledger
    attempt = intent.attempts.get()
    assert (attempt.status, attempt.reference) == (PaymentAttempt.Status.CAPTURED, f"{intent.public_id}-1")
    assert world["fake"].charge_count(intent.public_id) == 1


def test_create_without_confirm_waits_for_confirmation(world: dict[str, Any]) -> None:
    intent = services.payment_create(
        merchant=world["merchant"],
        cardholder=world["card"].cardholder,
        card=world["card"],
        amount=500,
        currency="CNY",
        idempotency_key=key(),
    )
    assert intent.status == PaymentIntent.Status.REQUIRES_CONFIRMATION
    assert intent.attempts.count() == 0
    confirmed = services.payment_confirm(merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=key())
    assert confirmed.status == PaymentIntent.Status.SUCCEEDED
    with pytest.raises(Conflict, match="cannot be confirmed"):
        services.payment_confirm(merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=key())


def test_manual_partial_capture_releases_the_rest_and_captures_once(world: dict[str, Any]) -> None:
    intent = pay(world, 10_000, capture="manual")
    assert intent.status == PaymentIntent.Status.REQUIRES_CAPTURE
    assert intent.amount_capturable == 10_000
    assert intent.points_earned == 0
    with pytest.raises(ValidationFailed, match="At most 10000"):
        services.payment_capture(
            merchant=world["merchant"], payment_id=intent.public_id, amount=10_001, idempotency_key=key()
        )
    captured = services.payment_capture(
        merchant=world["merchant"], payment_id=intent.public_id, amount=6_000, idempotency_key=key()
    )
    assert (captured.status, captured.amount_captured, captured.amount_capturable) == ("succeeded", 6_000, 0)
    assert captured.points_earned == 120
    with pytest.raises(Conflict, match="cannot be captured"):
        services.payment_capture(merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=key())
    assert [c for c in world["fake"].calls if c[0] == "capture"] == [("capture", f"{intent.public_id}-1")]


def test_capture_after_authorisation_expiry_is_refused_and_the_job_voids_it(world: dict[str, Any]) -> None:
    intent = pay(world, 2_000, capture="manual")
    PaymentIntent.objects.filter(pk=intent.pk).update(authorization_expires_at=timezone.now() - dt.timedelta(seconds=1))
    with pytest.raises(Conflict, match="expired"):
        services.payment_capture(merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=key())
    assert services.authorizations_expire() == 1
    intent.refresh_from_db()
    assert (intent.status, intent.cancellation_reason) == ("canceled", "authorization_expired")
    assert world["fake"].charge_count(intent.public_id) == 0


def test_idempotency_replays_and_conflicts(world: dict[str, Any]) -> None:
    args = {
        "merchant": world["merchant"],
        "cardholder": world["card"].cardholder,
        "card": world["card"],
        "currency": "CNY",
        "idempotency_key": "order-1",
        "confirm": True,
    }
    first = services.payment_create(amount=700, **args)
    again = services.payment_create(amount=700, **args)
    assert again.pk == first.pk
    assert PaymentIntent.objects.count() == 1
    assert world["fake"].charge_count() == 1
    with pytest.raises(IdempotencyConflict):
        services.payment_create(amount=701, **args)
    # Keys are per merchant: another merchant may use the same key.
    other = MerchantFactory(sponsor_bank=world["merchant"].sponsor_bank)
    services.payment_create(amount=700, **{**args, "merchant": other})
    assert PaymentIntent.objects.count() == 2


def test_a_domain_error_is_replayed_as_the_same_error(world: dict[str, Any]) -> None:
    args = {
        "merchant": world["merchant"],
        "cardholder": world["card"].cardholder,
        "card": world["card"],
        "currency": "XXX",
        "amount": 100,
        "idempotency_key": "bad-currency",
    }
    for _ in range(2):
        with pytest.raises(ValidationFailed, match="Unsupported currency"):
            services.payment_create(**args)
    assert PaymentIntent.objects.count() == 0


def test_decline_fails_the_payment_without_retrying_elsewhere(world: dict[str, Any]) -> None:
    ChannelFactory(acquirer=world["channel"].acquirer, code="acq-second", fee_percent="0.9")
    intent = pay(world, 1_052)
    assert (intent.status, intent.failure_code) == ("failed", "insufficient_funds")
    assert intent.attempts.count() == 1


def test_channel_failure_falls_back_to_the_next_channel(world: dict[str, Any]) -> None:
    ChannelFactory(acquirer=world["channel"].acquirer, code="acq-second", fee_percent="0.9")
    world["fake"].down_channels.add("acq-main")
    intent = pay(world, 1_000)
    assert intent.status == "succeeded"
    assert intent.channel.code == "acq-second"
    assert list(intent.attempts.values_list("status", flat=True)) == ["failed", "captured"]


def test_timeout_before_charge_is_resolved_by_inquiry_as_not_charged(world: dict[str, Any]) -> None:
    intent = pay(world, 1_054)
    attempt = intent.attempts.get()
    assert attempt.status == PaymentAttempt.Status.FAILED
    assert intent.status == "failed"
    assert world["fake"].charge_count() == 0


def test_charged_then_timeout_is_resolved_by_inquiry_as_charged_once(world: dict[str, Any]) -> None:
    ChannelFactory(acquirer=world["channel"].acquirer, code="acq-second", fee_percent="0.9")
    intent = pay(world, 1_055)
    assert intent.status == "succeeded"
    assert intent.attempts.count() == 1  # never retried elsewhere: it had charged
    assert world["fake"].charge_count() == 1


def test_timeout_with_inquiry_down_is_reversed_before_trying_anything_else(world: dict[str, Any]) -> None:
    ChannelFactory(acquirer=world["channel"].acquirer, code="acq-second", fee_percent="0.9")
    world["fake"].inquiry_down = True
    intent = pay(world, 2_055)  # charged, then timed out; the inquiry cannot answer → 冲正, then the next channel
    statuses = list(intent.attempts.values_list("channel__code", "status"))
    assert statuses == [("acq-main", "reversed"), ("acq-second", "reversed")]
    assert (intent.status, intent.failure_code) == ("failed", "channels_unavailable")
    assert world["fake"].charge_count() == 0


def test_partial_refunds_reverse_points_cumulatively_without_drift(world: dict[str, Any]) -> None:
    intent = pay(world, 10_001)  # 100.01 CNY × 2 = 200 points
    assert intent.points_earned == 200
    reversed_steps = []
    for amount in (3_333, 3_333, 3_335):
        refund = services.refund_create(
            merchant=world["merchant"], payment_id=intent.public_id, amount=amount, idempotency_key=key()
        )
        assert refund.status == Refund.Status.SUCCEEDED
        assert refund.merchant_id == intent.merchant_id  # settlement finds a merchant's refunds by it
        reversed_steps.append(refund.points_reversed)
    intent.refresh_from_db()
    # floor(200×3333/10001)=66, floor(200×6666/10001)=133, floor(200×10001/10001)=200
    assert reversed_steps == [66, 67, 67]
    assert (intent.amount_refunded, intent.points_reversed) == (10_001, 200)
    assert wallet(world) == 0
    with pytest.raises(Conflict, match="refunded in full"):
        services.refund_create(merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=key())


def test_refund_never_exceeds_captured(world: dict[str, Any]) -> None:
    intent = pay(world, 1_000)
    services.refund_create(merchant=world["merchant"], payment_id=intent.public_id, amount=600, idempotency_key=key())
    with pytest.raises(ValidationFailed, match="exceed"):
        services.refund_create(
            merchant=world["merchant"], payment_id=intent.public_id, amount=401, idempotency_key=key()
        )
    intent.refresh_from_db()
    assert (intent.amount_refunded, intent.amount_refund_reserved) == (600, 600)


def test_declined_refund_releases_its_reservation(world: dict[str, Any]) -> None:
    intent = pay(world, 1_000)
    refund = services.refund_create(
        merchant=world["merchant"], payment_id=intent.public_id, amount=151, idempotency_key=key()
    )
    assert (refund.status, refund.failure_code) == ("failed", "refund_declined")
    intent.refresh_from_db()
    assert (intent.amount_refunded, intent.amount_refund_reserved) == (0, 0)


def test_same_day_void_cancels_and_reverses_all_points(world: dict[str, Any]) -> None:
    intent = pay(world, 5_000)
    canceled = services.payment_cancel(merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=key())
    assert canceled.status == "canceled"
    assert canceled.points_reversed == canceled.points_earned == 100
    assert wallet(world) == 0
    assert world["fake"].charge_count() == 0


def test_void_after_settlement_is_refused_refund_instead(world: dict[str, Any]) -> None:
    from payments.models import SettlementBatch, SettlementLine

    intent = pay(world, 5_000)
    batch = SettlementBatch.objects.create(
        merchant=world["merchant"], currency="CNY", cycle="t1", period="p", cutoff_at=timezone.now(),
        settle_on=timezone.localdate(),
    )  # fmt: skip
    SettlementLine.objects.create(
        batch=batch, kind="payment", payment=intent, payment_created_at=intent.created_at,
        amount=intent.amount_captured,
    )  # fmt: skip
    with pytest.raises(Conflict, match="refund it instead"):
        services.payment_cancel(merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=key())
    refund = services.refund_create(merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=key())
    assert (refund.status, refund.amount) == ("succeeded", 5_000)


def test_jpy_has_no_minor_units_and_earns_no_points(world: dict[str, Any]) -> None:
    intent = pay(world, 1_000, currency="JPY")
    assert (intent.status, intent.amount_captured, intent.points_earned) == ("succeeded", 1_000, 0)


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        (0, "invalid_amount"),
        (-5, "invalid_amount"),
        (1.5, "invalid_amount"),
        (10**14, "amount_too_large"),
        (True, "invalid_amount"),
    ],
)
def test_bad_amounts_are_refused_and_write_nothing(world: dict[str, Any], amount: Any, code: str) -> None:
    with pytest.raises(ValidationFailed) as error:
        pay(world, amount)
    assert error.value.code == code
    assert PaymentIntent.objects.count() == 0


def test_frozen_or_foreign_cards_are_refused(world: dict[str, Any]) -> None:
    world["card"].status = "frozen"
    world["card"].save()
    with pytest.raises(ValidationFailed, match="not active"):
        pay(world, 1_000)
    stranger = CardFactory()
    with pytest.raises(NotFound):
        services.payment_create(
            merchant=world["merchant"],
            cardholder=world["card"].cardholder,
            card=stranger,
            amount=100,
            currency="CNY",
            idempotency_key=key(),
        )


def test_another_merchants_payment_is_not_found(world: dict[str, Any]) -> None:
    intent = pay(world, 1_000)
    other = MerchantFactory()
    with pytest.raises(NotFound):
        services.refund_create(merchant=other, payment_id=intent.public_id, idempotency_key=key())


def test_resolver_finishes_a_payment_whose_worker_crashed_after_charging(world: dict[str, Any]) -> None:
    intent = services.payment_create(
        merchant=world["merchant"],
        cardholder=world["card"].cardholder,
        card=world["card"],
        amount=3_000,
        currency="CNY",
        idempotency_key=key(),
    )
    # Simulate a crash: the attempt was written and the channel charged, but we never recorded the answer.
    from payments.connectors.base import AuthorizeRequest

    PaymentIntent.objects.filter(pk=intent.pk).update(status="processing")
    attempt = PaymentAttempt.objects.create(
        intent=intent,
        intent_created_at=intent.created_at,
        sequence=1,
        channel=world["channel"],
        reference=f"{intent.public_id}-1",
        amount=3_000,
        currency="CNY",
    )
    world["fake"].authorize(AuthorizeRequest("acq-main", attempt.reference, 3_000, "CNY", "card", "t", True, "m"))
    PaymentAttempt.objects.filter(pk=attempt.pk).update(created_at=timezone.now() - dt.timedelta(minutes=5))
    report = services.attempts_resolve()
    intent.refresh_from_db()
    assert (report.examined, report.charged) == (1, 1)
    assert (intent.status, intent.amount_captured, intent.points_earned) == ("succeeded", 3_000, 60)


def test_orphan_sweep_reverses_charges_we_do_not_know(world: dict[str, Any]) -> None:
    from payments.connectors.base import AuthorizeRequest

    known = pay(world, 1_000)
    world["fake"].authorize(AuthorizeRequest("acq-main", "ghost-1", 999, "CNY", "card", "t", True, "m"))
    report = services.orphans_sweep(channel=world["channel"])
    assert (report.examined, report.orphans_reversed) == (2, 1)
    assert world["fake"].charge_count("ghost-1") == 0
    assert world["fake"].charge_count(known.public_id) == 1
    assert services.orphans_sweep(channel=world["channel"]).examined == 0  # nothing new in the journal


def test_the_orphan_sweep_reads_only_what_is_new_and_asks_only_about_what_is_unmatched(
    world: dict[str, Any], monkeypatch: Any
) -> None:
    """Its work is bounded by what the journal gained since the last run, not by all history: payments we account
    for are matched without asking the channel; a charge it could not settle is looked at again, and only it."""
    from payments.connectors.base import AuthorizeRequest, Inquiry, Outcome
    from payments.models import UnmatchedCharge

    fake = world["fake"]
    asked: list[str] = []
    inquire = fake.inquire

    def counted(request: Any) -> Any:
        asked.append(request.reference)
        return inquire(request)

    monkeypatch.setattr(fake, "inquire", counted)
    for amount in range(1_000, 1_010):
        pay(world, amount)
    assert services.orphans_sweep(channel=world["channel"]).examined == 10
    assert asked == []  # matched by our attempts: the channel is not asked
    for amount in range(1_010, 1_030):
        pay(world, amount)
    fake.authorize(AuthorizeRequest("acq-main", "ghost-2", 999, "CNY", "card", "t", True, "m"))
    monkeypatch.setattr(fake, "inquire", lambda request: asked.append(request.reference) or Inquiry(Outcome.UNKNOWN))
    report = services.orphans_sweep(channel=world["channel"])
    assert (report.examined, report.orphans_reversed) == (21, 0)  # the 20 new payments and the ghost
    assert asked == ["ghost-2"]
    assert UnmatchedCharge.objects.get().reason == "inquiry unanswered"
    monkeypatch.setattr(fake, "inquire", counted)
    report = services.orphans_sweep(channel=world["channel"])
    assert (report.examined, report.orphans_reversed) == (1, 1)  # only the charge left open
    assert asked == ["ghost-2", "ghost-2"]
    assert not UnmatchedCharge.objects.exists()
    assert fake.charge_count("ghost-2") == 0


def test_channel_refusing_a_void_keeps_the_payment(world: dict[str, Any]) -> None:
    intent = pay(world, 1_000, capture="manual")
    world["fake"].clear()  # the channel forgot the authorisation: it refuses the void
    with pytest.raises(ChannelError):
        services.payment_cancel(merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=key())
    intent.refresh_from_db()
    assert intent.status == "requires_capture"


def test_jobs_run_through_celery_and_record_their_runs(world: dict[str, Any]) -> None:
    from django_celery_beat.models import PeriodicTask

    from core.models import JobRun
    from payments import tasks

    intent = pay(world, 1_000, capture="manual")
    PaymentIntent.objects.filter(pk=intent.pk).update(authorization_expires_at=timezone.now() - dt.timedelta(seconds=1))
    assert tasks.authorizations_expire.delay().get() == 1
    assert tasks.attempts_resolve.delay().get()["examined"] == 0
    assert tasks.orphans_sweep.delay().get()["orphans_reversed"] == 0
    runs = dict(JobRun.objects.values_list("job", "status"))
    assert runs == {
        "payments.authorizations_expire": "succeeded",
        "payments.attempts_resolve": "succeeded",
        "payments.orphans_sweep": "succeeded",
    }
    assert set(PeriodicTask.objects.filter(task__startswith="payments.").values_list("task", flat=True)) == {
        "payments.attempts_resolve",
        "payments.authorizations_expire",
        "payments.orphans_sweep",
        "payments.channels_probe",
        "payments.risk_reviews_expire",
        "payments.payouts_send",
        "payments.payouts_poll",
        "payments.settlement_t1",
        "payments.settlement_t0",
        "payments.reconcile",
        "payments.disputes_expire",
        "payments.disputes_poll",
    }


def test_refund_after_the_points_were_spent_leaves_a_points_debt(world: dict[str, Any]) -> None:
    from members.models import PointsProgram
    from rewards.models import Account
    from rewards.services import points_redeem

    intent = pay(world, 5_000)  # 100 points
    program = PointsProgram.objects.get(bank=world["issuer"])
    points_redeem(cardholder_id=world["card"].cardholder_id, program=program, amount=100, idempotency_key="spend-all")
    refund = services.refund_create(merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=key())
    assert (refund.status, refund.points_reversed) == ("succeeded", 100)
    debt = Account.objects.get(owner_kind="cardholder", owner_id=world["card"].cardholder_id, purpose="debt")
    assert debt.posted == -100
    pay(world, 2_500)  # the next 50 points pay the debt off first
    debt.refresh_from_db()
    assert debt.posted == -50
    assert wallet(world) == 0


def test_resolver_finishes_a_payment_whose_finish_step_failed_after_capture(world: dict[str, Any]) -> None:
    """The channel captured and we recorded the attempt, but the step that marks the payment succeeded never ran."""
    intent = services.payment_create(
        merchant=world["merchant"],
        cardholder=world["card"].cardholder,
        card=world["card"],
        amount=4_000,
        currency="CNY",
        idempotency_key=key(),
    )
    from payments.connectors.base import AuthorizeRequest

    attempt = PaymentAttempt.objects.create(
        intent=intent,
        intent_created_at=intent.created_at,
        sequence=1,
        channel=world["channel"],
        reference=f"{intent.public_id}-1",
        amount=4_000,
        currency="CNY",
        status="captured",
    )
    world["fake"].authorize(AuthorizeRequest("acq-main", attempt.reference, 4_000, "CNY", "card", "t", True, "m"))
    PaymentIntent.objects.filter(pk=intent.pk).update(
        status="processing", updated_at=timezone.now() - dt.timedelta(minutes=5)
    )
    services.attempts_resolve()
    intent.refresh_from_db()
    assert (intent.status, intent.amount_captured, intent.points_earned) == ("succeeded", 4_000, 80)
    assert wallet(world) == 80


def test_a_capture_whose_answer_was_lost_and_never_made_is_told_as_authorised_again(
    world: dict[str, Any], monkeypatch: Any
) -> None:
    """The capture's answer is lost and the inquiry cannot say: the payment stays processing and the merchant is told
    so. The resolver later finds it was not captured: authorised again, and the merchant is told that too."""
    from merchants.models import Event
    from payments.connectors.base import ChannelResponse, Inquiry, Outcome

    intent = pay(world, 3_000, capture="manual")
    fake = world["fake"]

    def answer_lost(request: Any) -> ChannelResponse:
        return ChannelResponse(Outcome.UNKNOWN, code="timeout")

    monkeypatch.setattr(fake, "capture", answer_lost)
    monkeypatch.setattr(fake, "inquire", lambda request: Inquiry(Outcome.UNKNOWN))
    services.payment_capture(merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=key())
    intent.refresh_from_db()
    assert intent.status == "processing"
    monkeypatch.undo()  # the channel answers inquiries again: it holds the payment authorised, not captured
    PaymentIntent.objects.filter(pk=intent.pk).update(updated_at=timezone.now() - dt.timedelta(minutes=5))
    services.attempts_resolve()
    intent.refresh_from_db()
    assert (intent.status, intent.amount_captured) == ("requires_capture", 0)
    told = list(Event.objects.filter(object_id=intent.public_id).order_by("pk").values_list("type", flat=True))
    assert told == ["payment.created", "payment.requires_capture", "payment.processing", "payment.requires_capture"]


@pytest.mark.parametrize(("amount", "settled"), [(4_000, "succeeded"), (4_051, "failed")])
def test_a_failure_between_the_channels_answer_and_its_recording_is_settled_by_the_resolver(
    world: dict[str, Any], monkeypatch: Any, amount: int, settled: str
) -> None:
    """The channel charged (or declined), and the step that records its answer fails: the payment is left
    `processing` with its attempt pending under the request's claim. Once the claim lapses the resolver asks the
    channel and settles it — charged once, or failed — never leaving it processing."""
    from payments.services import capture as capture_module
    from payments.services import intents

    def recording_fails(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(intents, "payment_finish", recording_fails)
    monkeypatch.setattr(capture_module, "_fail", recording_fails)
    with pytest.raises(RuntimeError):
        pay(world, amount)
    intent = PaymentIntent.objects.get()
    attempt = intent.attempts.get()
    assert (intent.status, attempt.status) == ("processing", "pending")
    monkeypatch.undo()
    assert services.attempts_resolve(older_than=dt.timedelta(0)).examined == 0  # still the request's claim
    PaymentAttempt.objects.filter(pk=attempt.pk).update(claimed_until=timezone.now() - dt.timedelta(seconds=1))
    services.attempts_resolve(older_than=dt.timedelta(0))
    intent.refresh_from_db()
    assert intent.status == settled
    assert world["fake"].charge_count(intent.public_id) == (1 if settled == "succeeded" else 0)
