"""The payment hot path's round trips, pinned: a regression that adds a query per payment fails here."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from payments import services
from tests.factories import (
    CardFactory,
    CardProductFactory,
    ChannelFactory,
    MemberBankFactory,
    MerchantFactory,
    PointsProgramFactory,
)
from tests.statements import as_written

# Transactional, as in production: no test-wide transaction turning commits into savepoints.
pytestmark = pytest.mark.django_db(transaction=True)


def test_create_confirm_capture_with_points_in_four_statements(channel_fake: Any, settings: Any) -> None:
    from rewards.models import Entry, LedgerTransaction

    settings.POINTS_PROGRAM_CACHE_TTL = 60  # as in production: the issuer's programme is cached per process
    bank = MemberBankFactory()
    PointsProgramFactory(bank=bank)
    card = CardFactory(product=CardProductFactory(bank=bank))
    merchant = MerchantFactory(sponsor_bank=bank)
    ChannelFactory(acquirer=bank)
    args = {"merchant": merchant, "cardholder": card.cardholder, "card": card, "currency": "CNY", "confirm": True}
    services.payment_create(amount=1_000, idempotency_key="warm-up", **args)  # creates the ledger accounts once
    with CaptureQueriesContext(connection) as queries:
        intent = services.payment_create(amount=1_000, idempotency_key="measured", **args)
    assert intent.status == "succeeded"
    assert intent.points_earned == 20  # 10.00 CNY of dining at 2 points per yuan
    executed = [q["sql"] for q in queries.captured_queries]
    # Every one runs prepared (core.db), and none is a transaction's BEGIN or COMMIT.
    assert all(sql.startswith("EXECUTE mengka_") for sql in executed), executed
    statements = [as_written(sql).split()[0] for sql in executed]
    # idempotency key · (risk rules, blocked lists and fee schedules are cached with the routing configuration, the
    # points programme per process) · one statement for the payment row (born processing, with its risk outcome),
    # the decision and the first attempt · one for the capture: the attempt's outcome, the guarded move of the
    # payment and the points it earns · idempotency done.
    assert statements == ["INSERT", "WITH", "WITH", "UPDATE"], statements
    start, capture = as_written(executed[1]), as_written(executed[2]).replace('"', "")
    for table in ("payments_paymentintent", "payments_routingdecision", "payments_paymentattempt"):
        assert f"INSERT INTO {table}" in start.replace('"', ""), start
    assert "UPDATE payments_paymentattempt" in capture, capture
    assert "UPDATE payments_paymentintent" in capture, capture
    assert "rewards_post_simple_or_raise" in capture, capture
    earned = LedgerTransaction.objects.get(idempotency_key=f"payment:{intent.public_id}:earn")
    assert earned.points == 20
    assert sorted(Entry.objects.filter(transaction=earned).values_list("amount", flat=True)) == [-20, 20]
    intent.refresh_from_db()
    assert (intent.status, intent.points_earned, intent.amount_captured) == ("succeeded", 20, 1_000)
    assert intent.attempts.get().status == "captured"


def test_a_payment_code_is_taken_by_the_statement_that_writes_the_payment(channel_fake: Any, settings: Any) -> None:
    from payments import methods

    settings.POINTS_PROGRAM_CACHE_TTL = 60
    bank = MemberBankFactory()
    PointsProgramFactory(bank=bank)
    card = CardFactory(product=CardProductFactory(bank=bank))
    merchant = MerchantFactory(sponsor_bank=bank)
    ChannelFactory(acquirer=bank)

    def pay(key: str) -> Any:
        code = methods.payment_code_generate(cardholder=card.cardholder, card=card).code
        return services.payment_create(
            merchant=merchant, amount=1_000, currency="CNY", payment_code=code, idempotency_key=key, confirm=True
        )

    pay("warm-up")
    with CaptureQueriesContext(connection) as queries:
        intent = pay("measured")
    assert intent.status == "succeeded"
    assert intent.payment_code is not None
    assert intent.payment_code.used_at is not None
    executed = [as_written(q["sql"]) for q in queries.captured_queries]
    executed = executed[executed.index(next(s for s in executed if "core_idempotencyrecord" in s)) :]  # after the code
    # idempotency key · the code with its card · the start, whose payment row is written only if the same statement
    # takes the code · the capture with its points · done: no transaction anywhere.
    statements = [sql.split()[0] for sql in executed]
    assert statements == ["INSERT", "SELECT", "WITH", "WITH", "UPDATE"], executed
    assert "payments_paymentcode" in executed[1]
    assert "payments_paymentcode" in executed[2]
    assert "payments_paymentintent" in executed[2]


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


def test_the_one_statement_start_writes_every_column_of_its_tables() -> None:
    """The hand-written start statement names every column of the decision and attempt tables (but the id): a new
    column fails here rather than in production."""
    from payments.models import PaymentAttempt, RoutingDecision

    for model, columns in ((RoutingDecision, services.DECISION_COLUMNS), (PaymentAttempt, services.ATTEMPT_COLUMNS)):
        expected = {field.column for field in model._meta.concrete_fields if not field.primary_key}
        assert set(columns) == expected, model


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
    attempt.status, attempt.channel_reference, attempt.resolved_at = "authorized", "late-ref", timezone.now()
    moved = services._finish_with_attempt(intent, {"status": "failed", "updated_at": timezone.now()}, attempt)
    assert moved == 0  # the payment had already left processing: the guarded UPDATE does not touch it
    attempt.refresh_from_db()
    assert (attempt.status, attempt.channel_reference) == ("authorized", "late-ref")
    intent.refresh_from_db()
    assert intent.status == "succeeded"
