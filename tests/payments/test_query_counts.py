"""The payment hot path's queries, pinned: a regression that adds a query per payment fails here."""

from __future__ import annotations

from typing import Any

import pytest

from payments import services
from tests.factories import (
    CardFactory,
    CardProductFactory,
    ChannelFactory,
    MemberBankFactory,
    MerchantFactory,
    PointsProgramFactory,
)

# Transactional, as in production: no test-wide transaction turning commits into savepoints.
pytestmark = pytest.mark.django_db(transaction=True)


def test_a_confirmed_payment_with_points_stays_within_its_queries(
    channel_fake: Any, settings: Any, django_assert_max_num_queries: Any
) -> None:
    from merchants.models import Event
    from rewards.models import Entry, LedgerTransaction

    settings.POINTS_PROGRAM_CACHE_TTL = 60  # as in production: the issuer's programme is cached per process
    bank = MemberBankFactory()
    PointsProgramFactory(bank=bank)
    card = CardFactory(product=CardProductFactory(bank=bank))
    merchant = MerchantFactory(sponsor_bank=bank)
    ChannelFactory(acquirer=bank)
    args = {"merchant": merchant, "cardholder": card.cardholder, "card": card, "currency": "CNY", "confirm": True}
    services.payment_create(amount=1_000, idempotency_key="warm-up", **args)  # creates the ledger accounts once
    # The key; the payment with its event (one transaction); the decision, the move to processing and the first
    # attempt (one transaction, before the channel is called); the capture: the guarded move, the attempt's outcome,
    # the points earned (the ledger's locks, entry count, entries and lot), the fee and the event (one transaction);
    # the key done.
    with django_assert_max_num_queries(QUERIES_PER_PAYMENT):
        intent = services.payment_create(amount=1_000, idempotency_key="measured", **args)
    assert intent.status == "succeeded"
    assert intent.points_earned == 20  # 10.00 CNY of dining at 2 points per yuan
    earned = LedgerTransaction.objects.get(idempotency_key=f"payment:{intent.public_id}:earn")
    assert earned.points == 20
    assert sorted(Entry.objects.filter(transaction=earned).values_list("amount", flat=True)) == [-20, 20]
    intent.refresh_from_db()
    assert (intent.status, intent.points_earned, intent.amount_captured) == ("succeeded", 20, 1_000)
    assert intent.attempts.get().status == "captured"
    assert list(Event.objects.filter(object_id=intent.public_id).order_by("pk").values_list("type", flat=True)) == [
        "payment.created",
        "payment.succeeded",
    ]


# What one payment by card, confirmed and captured with points earned, may cost in statements (its transactions'
# BEGIN, COMMIT and savepoints included, the earn's idempotency key's row and its entry count), the merchant's active
# promotions read once. A regression that adds a query per payment fails.
QUERIES_PER_PAYMENT = 30


def test_a_payment_code_is_taken_once(channel_fake: Any) -> None:
    from core.errors import Conflict
    from payments import methods

    bank = MemberBankFactory()
    card = CardFactory(product=CardProductFactory(bank=bank))
    merchant = MerchantFactory(sponsor_bank=bank)
    ChannelFactory(acquirer=bank)
    code = methods.payment_code_generate(cardholder=card.cardholder, card=card).code
    args = {"merchant": merchant, "amount": 1_000, "currency": "CNY", "payment_code": code, "confirm": True}
    intent = services.payment_create(idempotency_key="first", **args)
    assert intent.status == "succeeded"
    assert intent.payment_code is not None
    assert intent.payment_code.used_at is not None
    with pytest.raises(Conflict, match="already been used"):
        services.payment_create(idempotency_key="second", **args)
    assert merchant.payments.count() == 1


def test_a_confirm_reads_each_channels_breaker_once(channel_fake: Any, fresh_health: Any) -> None:
    """Each breaker read is a Redis round trip in production: the decision's reading serves the start too."""
    bank = MemberBankFactory()
    card = CardFactory(product=CardProductFactory(bank=bank))
    merchant = MerchantFactory(sponsor_bank=bank)
    ChannelFactory(acquirer=bank, code="one")
    ChannelFactory(acquirer=bank, code="two")
    reads: list[str] = []
    state = fresh_health.state

    def counted(channel: str, policy: Any) -> Any:
        reads.append(channel)
        return state(channel, policy)

    fresh_health.state = counted
    intent = services.payment_create(
        merchant=merchant,
        cardholder=card.cardholder,
        card=card,
        amount=1_000,
        currency="CNY",
        idempotency_key="k",
        confirm=True,
    )
    assert intent.status == "succeeded"
    assert sorted(reads) == ["one", "two"]


def test_a_started_payment_records_its_decision_processing_and_first_attempt(channel_fake: Any) -> None:
    from payments.models import PaymentAttempt, RoutingDecision

    bank = MemberBankFactory()
    PointsProgramFactory(bank=bank)
    card = CardFactory(product=CardProductFactory(bank=bank))
    merchant = MerchantFactory(sponsor_bank=bank)
    channel = ChannelFactory(acquirer=bank)
    intent = services.payment_create(
        merchant=merchant,
        cardholder=card.cardholder,
        card=card,
        currency="CNY",
        amount=1_000,
        idempotency_key="k",
        confirm=True,
    )
    decision = RoutingDecision.objects.get(intent=intent)
    assert decision.chosen == [channel.code]
    assert [c["channel"] for c in decision.candidates] == [channel.code]
    attempt = PaymentAttempt.objects.get(intent=intent)
    assert (attempt.sequence, attempt.channel_id, attempt.reference) == (1, channel.pk, f"{intent.public_id}-1")
    assert (attempt.status, attempt.amount, attempt.currency) == ("captured", 1_000, "CNY")
    assert attempt.created_at is not None
    assert attempt.resolved_at is not None
    intent.refresh_from_db()
    assert (intent.status, intent.risk_outcome, intent.risk_reasons) == ("succeeded", "allow", [])


def test_the_attempt_outcome_is_written_even_when_another_request_finished_the_payment(channel_fake: Any) -> None:
    from django.utils import timezone

    from payments.models import PaymentAttempt
    from payments.services.capture import payment_finish

    bank = MemberBankFactory()
    card = CardFactory(product=CardProductFactory(bank=bank))
    ChannelFactory(acquirer=bank)
    intent = services.payment_create(
        merchant=MerchantFactory(sponsor_bank=bank),
        cardholder=card.cardholder,
        card=card,
        currency="CNY",
        amount=500,
        idempotency_key="k",
        confirm=True,
    )
    attempt = PaymentAttempt.objects.get(intent=intent)
    PaymentAttempt.objects.filter(pk=attempt.pk).update(status="pending")  # as this request last read it
    attempt.status, attempt.channel_reference, attempt.resolved_at = "authorized", "late-ref", timezone.now()
    moved = payment_finish(intent, attempt, captured=False)
    assert moved is False  # the payment had already left processing: the guarded UPDATE does not touch it
    attempt.refresh_from_db()
    assert (attempt.status, attempt.channel_reference) == ("authorized", "late-ref")
    intent.refresh_from_db()
    assert intent.status == "succeeded"


def test_an_outcome_is_not_written_over_one_another_process_recorded(channel_fake: Any) -> None:
    """A request whose claim lapsed while it waited on its channel finds the attempt settled by the resolver: what
    it was about to record is dropped, and the payment is as the resolver left it."""
    from django.utils import timezone

    from payments.models import PaymentAttempt, PaymentIntent
    from payments.services.capture import payment_finish

    bank = MemberBankFactory()
    card = CardFactory(product=CardProductFactory(bank=bank))
    channel = ChannelFactory(acquirer=bank)
    intent = services.payment_create(
        merchant=MerchantFactory(sponsor_bank=bank),
        cardholder=card.cardholder,
        card=card,
        currency="CNY",
        amount=500,
        idempotency_key="k",
    )
    attempt = PaymentAttempt.objects.create(
        intent=intent, sequence=1, channel=channel, intent_created_at=intent.created_at,
        reference=f"{intent.public_id}-1", amount=500, currency="CNY", status="reversed",
    )  # fmt: skip
    PaymentIntent.objects.filter(pk=intent.pk).update(status="processing")
    attempt.status, attempt.resolved_at = "authorized", timezone.now()  # the late answer, read when it was pending
    assert payment_finish(intent, attempt, captured=False) is False
    attempt.refresh_from_db()
    assert attempt.status == "reversed"
    intent.refresh_from_db()
    assert intent.status == "processing"
