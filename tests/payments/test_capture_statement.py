"""A capture outside a caller's transaction is one statement (PostgreSQL): the attempt's outcome, the payment's guarded
move, its fee and split, the points earned — all written, or none. Most tests run inside a test-wide transaction and
so take the transactional path; these run as production does and compare the two."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.errors import IdempotencyConflict
from payments import services
from payments.fees import fee_schedule_create
from payments.models import FeeSplit, PaymentIntent
from rewards.models import Account, Entry, LedgerTransaction
from tests.factories import (
    CardFactory,
    CardProductFactory,
    ChannelFactory,
    MemberBankFactory,
    MerchantFactory,
    PointsProgramFactory,
)
from tests.statements import as_written

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
_keys = itertools.count()


@pytest.fixture
def world(channel_fake: Any, settings: Any) -> dict[str, Any]:
    settings.POINTS_PROGRAM_CACHE_TTL = 0
    issuer, acquirer = MemberBankFactory(), MemberBankFactory()
    PointsProgramFactory(bank=issuer)
    card = CardFactory(product=CardProductFactory(bank=issuer))
    merchant = MerchantFactory(sponsor_bank=acquirer)
    ChannelFactory(acquirer=acquirer)
    fee_schedule_create(
        mdr_percent=Decimal("0.6"),
        issuer_share=Decimal("60"),
        acquirer_share=Decimal("25"),
        channel_share=Decimal("10"),
        alliance_share=Decimal("5"),
        effective_from=timezone.now() - dt.timedelta(days=1),
    )
    return {"card": card, "merchant": merchant}


def pay(world: dict[str, Any], amount: int, **kw: Any) -> PaymentIntent:
    return services.payment_create(
        merchant=world["merchant"],
        cardholder=world["card"].cardholder,
        card=world["card"],
        amount=amount,
        currency="CNY",
        idempotency_key=f"capture-{next(_keys)}",
        **kw,
    )


def written(intent: PaymentIntent) -> dict[str, Any]:
    """What a capture leaves in the database, comparable across payments."""
    intent.refresh_from_db()
    earn = LedgerTransaction.objects.filter(idempotency_key=f"payment:{intent.public_id}:earn").first()
    return {
        "payment": (intent.status, intent.amount_captured, intent.amount_capturable, intent.fee, intent.points_earned),
        "attempts": [a.status for a in intent.attempts.all()],
        "splits": sorted(FeeSplit.objects.filter(payment=intent).values_list("event", "party", "bank_id", "amount")),
        "earned": earn.points if earn else None,
        "entries": sorted(Entry.objects.filter(transaction=earn).values_list("amount", flat=True)) if earn else [],
    }


def test_the_one_statement_capture_writes_what_the_transactional_path_writes(world: dict[str, Any]) -> None:
    pay(world, 1_000, confirm=True)  # the first earn creates the ledger accounts (the transactional path)
    with CaptureQueriesContext(connection) as queries:
        fast = pay(world, 12_345, confirm=True)
    with transaction.atomic():  # inside a caller's transaction: BEGIN … COMMIT around the capture's statements
        slow = pay(world, 12_345, confirm=True)
    fast_written, slow_written = written(fast), written(slow)
    assert fast_written == slow_written
    assert fast_written["payment"] == ("succeeded", 12_345, 0, 7407, 246)  # 0.6 % of ¥123.45 in 1/100 fen
    assert sum(amount for *_, amount in fast_written["splits"]) == 7407
    assert len(fast_written["splits"]) == 4
    captures = [as_written(q["sql"]) for q in queries.captured_queries if "rewards_post_simple" in as_written(q["sql"])]
    assert len(captures) == 1
    assert "payments_feesplit" in captures[0]
    assert "payments_paymentintent" in captures[0]
    assert not any(as_written(q["sql"]).startswith(("BEGIN", "COMMIT")) for q in queries.captured_queries)


def test_an_earn_that_is_not_plain_leaves_nothing_and_takes_the_transactional_path(world: dict[str, Any]) -> None:
    """The cardholder's first earn: the ledger accounts do not exist yet, so the statement fails as a whole."""
    with CaptureQueriesContext(connection) as queries:
        intent = pay(world, 5_000, confirm=True)
    state = written(intent)
    assert state["payment"] == ("succeeded", 5_000, 0, 3000, 100)
    assert state["attempts"] == ["captured"]
    assert state["earned"] == 100
    assert state["entries"] == [-100, 100]
    assert len(state["splits"]) == 4  # once: the failed statement wrote none
    executed = [as_written(q["sql"]) for q in queries.captured_queries if not q["sql"].startswith("PREPARE")]
    carried = [i for i, sql in enumerate(executed) if "rewards_post_simple_or_raise" in sql]
    assert len(carried) == 1
    assert executed[carried[0] + 1] == "BEGIN"  # then the transactional path
    wallet = Account.objects.get(owner_kind="cardholder", owner_id=world["card"].cardholder_id, purpose="points")
    assert wallet.posted == 100


def test_a_payment_moved_by_another_request_is_not_captured_twice(world: dict[str, Any]) -> None:
    pay(world, 1_000, confirm=True)
    intent = pay(world, 2_000)  # requires confirmation
    services.payment_confirm(
        merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=f"confirm-{next(_keys)}"
    )
    done = written(intent)
    attempt = intent.attempts.get()
    stale = PaymentIntent.objects.get(pk=intent.pk)
    now = timezone.now()
    fields = {
        "status": "succeeded",
        "amount_captured": 2_000,
        "amount_capturable": 0,
        "captured_at": now,
        "updated_at": now,
        "points_earned": 41,  # another amount: were the earn posted at all, its key would refuse it
    }
    attempt.error_message = "second finish"
    assert services._capture_in_one_statement(stale, fields, attempt) is False
    assert written(intent) == done  # no second earn, no second split
    attempt.refresh_from_db()
    assert attempt.error_message == "second finish"  # the attempt's outcome is written either way


def test_an_earn_key_used_with_other_parameters_refuses_the_whole_capture(world: dict[str, Any]) -> None:
    pay(world, 1_000, confirm=True)
    intent = pay(world, 3_000)
    LedgerTransaction.objects.create(
        kind="earn", idempotency_key=f"payment:{intent.public_id}:earn", request_hash="0" * 64, points=1
    )
    with pytest.raises(IdempotencyConflict):
        services.payment_confirm(
            merchant=world["merchant"], payment_id=intent.public_id, idempotency_key=f"confirm-{next(_keys)}"
        )
    intent.refresh_from_db()
    assert intent.status == "processing"  # left for attempts_resolve, as the transactional path leaves it
    assert not FeeSplit.objects.filter(payment=intent).exists()
    assert intent.fee == 0
    assert intent.points_earned == 0
