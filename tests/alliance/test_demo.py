"""The demo alliance: created through the services, complete enough to explore, consistent with the channel
simulator and the ledger, and idempotent."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.db.models import F, Sum
from psycopg2 import sql

from alliance.demo import DemoContext, seed_all, summary
from core.calendar import SHANGHAI
from payments.connectors import reset_connectors
from payments.demo import STATEMENT_CASES

pytestmark = pytest.mark.django_db


def _counts() -> dict[str, int]:
    from alliance.models import SegmentMembership
    from core.models import ApprovalRequest, ArchivedMonth, AuditLog
    from members.models import Card, Cardholder, MemberBank
    from merchants.models import ApiKey, Merchant, Store
    from payments.models import (
        AgreementRequest,
        Channel,
        FeeSchedule,
        FeeSplit,
        PaymentIntent,
        Refund,
        RiskRule,
        RoutingRule,
    )
    from rewards.models import Entry, LedgerTransaction

    return {
        "banks": MemberBank.objects.count(),
        "cardholders": Cardholder.objects.count(),
        "cards": Card.objects.count(),
        "merchants": Merchant.objects.count(),
        "channels": Channel.objects.count(),
        "rules": RoutingRule.objects.count(),
        "payments": PaymentIntent.objects.count(),
        "refunds": Refund.objects.count(),
        "audit": AuditLog.objects.count(),
        "api_keys": ApiKey.objects.count(),
        "agreement_requests": AgreementRequest.objects.count(),
        "stores": Store.objects.count(),
        "fee_schedules": FeeSchedule.objects.count(),
        "fee_splits": FeeSplit.objects.count(),
        "risk_rules": RiskRule.objects.count(),
        "method_payments": PaymentIntent.objects.filter(metadata__demo_method=True).count(),
        "case_payments": PaymentIntent.objects.filter(metadata__has_key="demo_case").count(),
        "spending_payments": PaymentIntent.objects.filter(metadata__has_key="demo_spending").count(),
        "segment_payments": PaymentIntent.objects.filter(metadata__has_key="demo_segments").count(),
        "segment_memberships": SegmentMembership.objects.count(),
        "tagged": Cardholder.objects.exclude(segment_tags=[]).count(),
        "ledger_transactions": LedgerTransaction.objects.count(),
        "ledger_entries": Entry.objects.count(),
        "approval_requests": ApprovalRequest.objects.count(),
        "archived_months": ArchivedMonth.objects.count(),
        "approvals_pending": ApprovalRequest.objects.filter(status="pending").count(),
    }


@pytest.fixture
def demo_on_simulator(simulator: Any, simulator_server: Any, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    from payments import demo as payments_demo

    settings.SIMULATOR = {
        **settings.SIMULATOR,
        "URL": simulator_server.url,
        "KEY_ID": simulator_server.key_id,
        "SECRET": simulator_server.secret,
    }
    reset_connectors()
    monkeypatch.setitem(payments_demo.HISTORY, "small", 60)
    yield simulator
    reset_connectors()


def test_seed_demo_builds_the_alliance_through_the_simulator_and_a_second_run_adds_nothing(
    demo_on_simulator: Any,
) -> None:
    from payments.models import Channel, PaymentIntent, Refund

    simulator = demo_on_simulator
    ctx = seed_all(DemoContext(scale="small", out=io.StringIO()))
    first = _counts()
    assert first["banks"] == 6
    from members.models import CardProduct, PointsProgram

    # English pages name every programme and product in English.
    assert not PointsProgram.objects.filter(name_en="").exists()
    assert not CardProduct.objects.filter(name_en="").exists()
    assert first["cardholders"] >= 200
    assert first["merchants"] == 5
    # The approval queue: a request of each kind waits (for the alliance operators), one approved, one rejected.
    from core.approvals import approval_kinds
    from core.models import ApprovalRequest

    pending = ApprovalRequest.objects.filter(status="pending")
    kinds = {kind.code for kind in approval_kinds() if not kind.code.startswith("tests.")}  # test-only kinds aside
    # DEMO-FUEL's held batches cannot be paid: its sponsor bank (MFBK) has no CNY payout channel, so no payout
    # release is asked (see docs/approvals.md, "In the demo").
    assert sorted(pending.values_list("kind", flat=True)) == sorted(kinds - {"payments.payout_release"})
    assert "not asked" not in ctx.out.getvalue()
    assert first["approval_requests"] - first["approvals_pending"] >= 2
    assert first["channels"] == 16  # 8 live channels, each with a sandbox twin for test-mode payments
    assert Channel.objects.filter(sandbox=True).count() == 8
    routed = PaymentIntent.objects.exclude(channel=None)
    assert routed.filter(livemode=False).exists()
    assert not routed.filter(livemode=False, channel__sandbox=False).exists()
    assert not routed.filter(livemode=True, channel__sandbox=True).exists()
    assert first["rules"] == 3
    assert first["method_payments"] == 17  # 8 payment codes, 3 agreements, 6 wallet balances
    # Two held for risk review, one paid partly with points, and the demo login's statement (some refunded).
    assert first["case_payments"] == 3 + len(STATEMENT_CASES)
    assert first["spending_payments"] == 11  # the demo login's year, for spending at a glance
    assert first["segment_payments"] == 7  # the demo login's dining and travel payments
    made_for_pages = first["case_payments"] + first["spending_payments"] + first["segment_payments"]
    assert first["payments"] == 60 + first["method_payments"] + made_for_pages
    from members.models import Cardholder

    demo_login = Cardholder.objects.get(user__username="demo")
    assert demo_login.segment_tags == ["driver", "dining", "frequent_traveller"]
    assert first["segment_memberships"] >= 2
    assert first["fee_schedules"] == 5
    assert first["fee_splits"] > 0
    assert first["risk_rules"] == 7
    by_method = set(PaymentIntent.objects.filter(status="succeeded").values_list("method", flat=True))
    assert by_method == {"card", "payment_code", "agreement", "balance"}
    assert not PaymentIntent.objects.filter(metadata__demo_method=True).exclude(status="succeeded").exists()
    statuses = set(PaymentIntent.objects.values_list("status", flat=True))
    assert statuses == {"succeeded", "failed", "canceled", "requires_capture"}
    failures = set(PaymentIntent.objects.filter(status="failed").values_list("failure_code", flat=True))
    assert failures == {"do_not_honour", "insufficient_funds"}  # the declines of indexes 0 and 37, nothing else
    held = PaymentIntent.objects.filter(risk_review=True, status="requires_capture", metadata__has_key="demo_case")
    assert held.count() == 2
    assert not held.filter(cardholder__user__username="demo").exists()
    paid_with_points = PaymentIntent.objects.get(metadata__demo_case="points")
    assert paid_with_points.cardholder.user.username == "demo"
    assert (paid_with_points.status, paid_with_points.points_used) == ("succeeded", 2000)
    assert paid_with_points.points_spend_id is not None
    assert paid_with_points.points_earned > 0
    refunded = PaymentIntent.objects.filter(amount_refunded__gt=0)
    assert refunded.filter(amount_refunded__lt=F("amount_captured")).exists()  # partial refunds
    assert refunded.filter(amount_refunded=F("amount_captured")).exists()  # refunds in full
    assert not Refund.objects.exclude(status="succeeded").exists()
    assert ("cardholder (portal, cards at 3 banks)", "demo") in [(role, user) for role, user, _ in ctx.logins]
    from members.models import Cardholder
    from payments.spending import spending_at_a_glance

    glance = spending_at_a_glance(Cardholder.objects.get(user__username="demo"))
    cny = glance.currencies[0]
    assert all(cny.monthly[:11])  # something in every month before this one
    assert len(cny.by_category) >= 5
    assert len(cny.by_bank) >= 3  # the three banks of its cards (and its wallet's member)
    assert first["api_keys"] == 5
    from payments.models import AgreementRequest

    requests = AgreementRequest.objects.order_by("pk")
    assert [(r.status, r.current_status) for r in requests] == [("granted", "granted"), ("pending", "pending")]
    assert requests[0].agreement.cardholder.user.username == "demo"  # type: ignore[union-attr]
    assert first["stores"] == 10  # a first store in each mode
    # A tenth of the history is the printed test keys' sandbox; the rest (and every other payment) is live.
    assert PaymentIntent.objects.filter(metadata__demo=True, livemode=False).count() == 6
    assert not PaymentIntent.objects.exclude(metadata__demo=True).filter(livemode=False).exists()
    assert [merchant for merchant, _key in ctx.api_keys] == sorted(merchant for merchant, _key in ctx.api_keys)
    assert all(key.startswith("sk_test_") for _merchant, key in ctx.api_keys)
    assert len(ctx.api_keys) == 5
    journal = simulator.journal_all()
    _the_demo_compares_cards_with_apply_links_and_valued_privileges()
    _a_month_of_the_demo_merchants_payments_is_archived(ctx)

    seed_all(DemoContext(scale="small", out=io.StringIO()))
    assert _counts() == first  # the archived months among them: seeding again archives nothing more
    assert len(simulator.journal_all()) == len(journal)  # nothing asked of the channels either


def _the_demo_compares_cards_with_apply_links_and_valued_privileges() -> None:
    from alliance.services import best_card_for
    from members.models import Cardholder, CardProduct

    assert not CardProduct.objects.filter(apply_url="").exists()
    assert CardProduct.objects.get(code="HX-GOLD").apply_url == "https://hxsb.example/apply/HX-GOLD"
    demo = Cardholder.objects.get(user__username="demo")
    result = best_card_for(demo, {"dining": Decimal("1000")}, {"service": 1})
    assert len(result.ranking) == CardProduct.objects.count()
    assert any(card.benefits_value > 0 for card in result.ranking)  # the stated values of the free privileges
    assert any(card.held for card in result.ranking)


def _a_month_of_the_demo_merchants_payments_is_archived(ctx: DemoContext) -> None:
    """The archived month of entries is archived for every payments table too; its archive holds the demo merchant's
    two test-mode payments (one refunded in part), and the merchant's printed test key asking for the payment the
    step names is told that its month was archived."""
    from rest_framework.test import APIClient

    from core.models import ArchivedMonth
    from core.partitions import PARTITIONED
    from payments.demo import ARCHIVED_MERCHANT, ARCHIVED_PAYMENTS
    from payments.models import PaymentIntent
    from tests.partitioning import fetch

    month = ArchivedMonth.objects.get(table="rewards_entry").month
    tables = [table for table in PARTITIONED if table.startswith("payments_")]
    archived = ArchivedMonth.objects.filter(table__startswith="payments_")
    assert {(a.table, a.month, a.archive_table) for a in archived} == {
        (table, month, f"{table}_archive_{month:%Y%m}") for table in tables
    }
    payments = fetch(
        "SELECT p.public_id, m.code, p.livemode, p.status, p.amount_captured, p.amount_refunded, p.created_at"
        f" FROM payments_paymentintent_archive_{month:%Y%m} p JOIN merchants_merchant m ON m.id = p.merchant_id"
        " ORDER BY p.id"
    )
    assert [row[1:6] for row in payments] == [
        (ARCHIVED_MERCHANT, False, "succeeded", amount, refunded) for amount, refunded in ARCHIVED_PAYMENTS
    ]
    assert {created.astimezone(SHANGHAI).date().replace(day=1) for *_row, created in payments} == {month}
    assert fetch(f"SELECT status FROM payments_refund_archive_{month:%Y%m}") == [("succeeded",)]
    assert not PaymentIntent.objects.filter(metadata__has_key="demo_archived").exists()
    shown = payments[-1][0]
    assert shown in ctx.out.getvalue()  # the step's line names it
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {dict(ctx.api_keys)[ARCHIVED_MERCHANT]}")
    response = client.get(f"/api/v1/payments/{shown}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "payment_archived"
    assert f"{month:%Y-%m}" in response.json()["error"]["message"]


def test_the_simulator_journal_and_statements_agree_with_every_demo_payment(demo_on_simulator: Any) -> None:
    """Every demo payment went through the simulator: what it charged, refunded and reversed, by reference, is what
    our attempts and payments say, archived or not; it charged nothing we do not know of; and its statements add up
    to the same, less the chargebacks it decided lost (their debit is in the totals)."""
    from core.partitions import with_archives
    from payments.models import Dispute
    from tests.partitioning import fetch

    simulator = demo_on_simulator
    seed_all(DemoContext(scale="small", out=io.StringIO()))
    journal = simulator.journal_all()
    moved: dict[str, int] = defaultdict(int)
    charged: set[str] = set()
    for row in journal:
        if row["reference"]:
            moved[row["reference"]] += row["money"]
        if row["op"] in ("sale", "authorise") and row["outcome"] == "ok":
            charged.add(row["reference"])
    # (reference, status, channel, what the payment kept) of every attempt, the archived month's too.
    attempts = fetch(
        "SELECT a.reference, a.status, c.remote_id,"
        " CASE WHEN p.status = 'succeeded' THEN p.amount_captured - p.amount_refunded ELSE 0 END"
        f" FROM {with_archives('payments_paymentattempt', ('reference', 'status', 'channel_id', 'intent_id'))} a"
        f" JOIN {with_archives('payments_paymentintent', ('id', 'status', 'amount_captured', 'amount_refunded'))} p"
        " ON p.id = a.intent_id JOIN payments_channel c ON c.id = a.channel_id"
    )
    (payments,) = fetch(f"SELECT count(*) FROM {with_archives('payments_paymentintent', ('id',))} p")[0]
    assert len(attempts) == payments  # every payment went to a channel, once
    assert {ref: moved.get(ref, 0) for ref, *_rest in attempts} == {ref: net for ref, _s, _c, net in attempts}
    ours = {ref for ref, status, *_rest in attempts if status in ("authorized", "captured", "voided", "reversed")}
    assert charged == ours
    expected: dict[str, int] = defaultdict(int)
    for _ref, _status, channel, net in attempts:
        expected[channel] += net
    lost = Dispute.objects.filter(status="lost").exclude(kind="retrieval").select_related("channel")
    assert lost.exists()  # the demo's lost chargeback
    for dispute in lost:
        assert dispute.channel is not None
        expected[dispute.channel.remote_id] -= dispute.amount
    stated: dict[str, int] = defaultdict(int)
    for channel, day in {(row["channel"], row["business_date"]) for row in journal if row["money"]}:
        # Each channel writes its own layout; csv_v1 (asked for here) has the per-currency totals to add up.
        for line in csv.DictReader(io.StringIO(simulator.statement(channel=channel, date=day, format="csv_v1"))):
            if line["record"] == "T":
                stated[channel] += int(line["amount_minor"])
    # A channel whose day's money nets to nothing (a sale reversed in full) states a total of 0: both sides alike.
    assert {channel: total for channel, total in expected.items() if total} == {
        channel: total for channel, total in stated.items() if total
    }


def test_the_demo_ledger_balances_and_every_payment_posted_its_points(demo_on_simulator: Any) -> None:
    from payments.models import FeeSplit, PaymentIntent
    from rewards.checks import ledger_verify
    from rewards.models import Entry, LedgerTransaction

    seed_all(DemoContext(scale="small", out=io.StringIO()))
    assert ledger_verify(seals=False).violations == []
    _the_demo_login_still_sees_its_archived_months_movements()
    per_unit = Entry.objects.values("transaction_id", "unit").annotate(total=Sum("amount")).exclude(total=0)
    assert not per_unit.exists()  # every transaction, the bulk history's batches included, sums to zero per unit
    batches = LedgerTransaction.objects.filter(idempotency_key__startswith="demo:earn-batch:")
    assert set(batches.values_list("kind", flat=True)) == {"earn_batch"}
    assert batches.count() == 3
    captured = PaymentIntent.objects.filter(livemode=True, amount_captured__gt=0)
    for intent in captured.filter(points_earned__gt=0):
        earn = LedgerTransaction.objects.get(idempotency_key=f"payment:{intent.public_id}:earn")
        assert earn.points == intent.points_earned
        reversed_points = LedgerTransaction.objects.filter(reverses=earn).aggregate(total=Sum("points"))["total"] or 0
        assert reversed_points == intent.points_reversed
    assert not captured.filter(card__isnull=False, points_earned=0).exists()  # every card-funded payment earned
    for intent in captured:
        splits = FeeSplit.objects.filter(payment=intent, event="capture").aggregate(total=Sum("amount"))["total"]
        assert splits == intent.fee


def test_the_command_prints_one_bar_per_step_no_request_logs_and_the_addresses_last(
    demo_on_simulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    out = io.StringIO()
    with caplog.at_level("INFO"):
        call_command("seed_demo", "--site", "http://127.0.0.1:8001", stdout=out)
    assert not [record for record in caplog.records if record.name.startswith("httpx")]
    lines = out.getvalue().split("\n")  # a bar's redraws share its line, each after a "\r"
    bars = [line for line in lines if "|" in line and "/" in line]
    assert [bar.split(":")[0].split("\r")[-1] for bar in bars] == [
        "members.seed_demo",
        "rewards.seed_demo",
        "payments.seed_demo",
    ]
    ready = next(n for n, line in enumerate(lines) if line.startswith("Demo data ready."))
    block = lines[ready:]
    assert len(block) <= 12
    assert "http://127.0.0.1:8001/" in block[1]
    assert "demo" in block[1]
    assert "http://127.0.0.1:8001/admin/" in block[2]
    assert "alliance" in block[2]
    assert "op_hxsb" in block[2]
    assert "http://127.0.0.1:8001/api/v1/docs/" in block[3]
    assert settings.SIMULATOR["URL"].rstrip("/") in block[4]
    assert sum("sk_test_" in line for line in block) == 5


def test_summary_names_each_login_once_with_its_password_when_they_differ() -> None:
    ctx = DemoContext()
    ctx.login("cardholder", "someone", "secret-1")
    ctx.login("cardholder", "another", "secret-2")
    lines = summary(ctx, site="http://127.0.0.1:8000/", simulator="http://127.0.0.1:8100")
    assert lines[0] == "Demo data ready."
    assert "someone / secret-1, another / secret-2" in lines[1]
    assert not any("sk_test_" in line for line in lines)
    assert lines[-1].startswith("  test keys  (shown by the run that made them;")


def test_the_demo_promotions_cover_every_kind_and_price_the_demo_payments(demo_on_simulator: Any) -> None:
    from payments.models import PaymentIntent
    from rewards.models import Promotion, PromotionUse

    seed_all(DemoContext(scale="small", out=io.StringIO()))
    promotions = Promotion.objects.all()
    assert set(promotions.values_list("kind", flat=True)) == set(Promotion.Kind.values)
    assert not promotions.filter(livemode=False).exists()
    states = set(promotions.exclude(cofunder=None).values_list("cofunding", flat=True))
    assert states == {"approved", "pending"}
    approved = promotions.get(cofunding="approved")
    assert approved.cofunding_decided_by is not None
    targeted = promotions.exclude(segment_tags=[])
    assert targeted.count() == 1
    assert promotions.filter(merchant=targeted.get().merchant, segment_tags=[]).exists()
    assert promotions.get(kind="frequency_reward").reward_benefit.merchant.code == "DEMO-NOODLE"  # type: ignore[union-attr]
    assert PaymentIntent.objects.filter(discount_amount__gt=0).exists()
    assert PaymentIntent.objects.exclude(promotions=[]).count() > 5
    assert PromotionUse.objects.filter(status="consumed").exists()
    assert promotions.filter(committed__gte=F("budget") * 8 / 10).exists()  # a campaign spent (nearly) down
    assert not PromotionUse.objects.filter(promotion__cofunding="pending").exists()  # not applied before approval


def test_the_demo_settles_its_history_over_a_holiday_with_batches_in_every_state(demo_on_simulator: Any) -> None:
    from core.calendar import is_working_day, load_calendar
    from payments.models import Payout, SettlementBatch, SettlementLine

    seed_all(DemoContext(scale="small", out=io.StringIO()))
    batches = SettlementBatch.objects.all()
    assert set(batches.values_list("status", flat=True)) >= {
        "settled", "held", "carried", "paying", "paid", "returned",
    }  # fmt: skip
    periods = batches.filter(cycle="t1").values_list("period", flat=True)
    days = sorted({date.fromisoformat(period) for period in periods})
    calendar = load_calendar()
    assert any(day.weekday() >= 5 and is_working_day(day) for day in days)  # a 调休 weekend day settled
    assert calendar.holidays & {days[0] + timedelta(days=n) for n in range((days[-1] - days[0]).days)}
    assert batches.filter(cycle="t0").exists()
    assert batches.filter(reserve_held__gt=0).exists()
    for held in batches.filter(status="held"):
        assert held.hold_reason
    for merchant_id in batches.values_list("merchant", flat=True).distinct():
        previous = None
        for batch in batches.filter(merchant_id=merchant_id).order_by("cutoff_at"):
            # A negative net is carried, whole, into the merchant's next batch.
            assert batch.carried_in == (previous.carried_out if previous is not None else 0), batch.public_id
            assert (batch.status == "carried") == (batch.net <= 0)
            previous = batch
    assert Payout.objects.filter(status="returned", return_reason="account_closed").exists()
    for batch in batches:  # every figure is the sum of its lines
        lines = SettlementLine.objects.filter(batch=batch, kind__in=["payment", "refund"])
        assert batch.gross - batch.refunds == sum(line.amount for line in lines), batch.public_id
    seed_all(DemoContext(scale="small", out=io.StringIO()))  # a second run settles nothing again
    assert SettlementBatch.objects.count() == batches.count()


def test_the_demo_clears_every_day_of_its_history(demo_on_simulator: Any) -> None:
    from alliance.models import ClearingInstruction, ClearingPosition, ClearingRun
    from alliance.services import clearing_due

    seed_all(DemoContext(scale="small", out=io.StringIO()))
    runs = ClearingRun.objects.order_by("business_day")
    assert runs.count() >= 3
    for run in runs:
        assert sum(ClearingPosition.objects.filter(run=run).values_list("net_minor", flat=True)) == 0
        assert sum(ClearingPosition.objects.filter(run=run).values_list("net", flat=True)) == 0
    statuses = set(ClearingInstruction.objects.values_list("status", flat=True))
    assert {"confirmed", "sent"} <= statuses
    assert set(runs.values_list("status", flat=True)) >= {"settled", "instructing"}
    from django.utils import timezone

    from core.calendar import local_date
    from rewards.models import LedgerTransaction

    obligations = LedgerTransaction.objects.filter(entries__account__purpose__in=["clearing", "fees"])
    days = {local_date(at) for at in obligations.values_list("created_at", flat=True)} - {timezone.localdate()}
    assert set(runs.values_list("business_day", flat=True)) == days  # every day of the history is cleared
    assert clearing_due() == []
    before = (ClearingRun.objects.count(), ClearingPosition.objects.count(), ClearingInstruction.objects.count())
    seed_all(DemoContext(scale="small", out=io.StringIO()))  # a second run adds nothing
    after = (ClearingRun.objects.count(), ClearingPosition.objects.count(), ClearingInstruction.objects.count())
    assert after == before


def test_the_demo_has_a_dispute_in_every_state(demo_on_simulator: Any, simulator: Any) -> None:
    """Every demo dispute is raised at the simulator and arrives through the poll, as a channel delivers it."""
    from payments.models import Dispute

    seed_all(DemoContext(scale="small", out=io.StringIO()))
    disputes = Dispute.objects.filter(payment__metadata__has_key="demo_dispute").select_related("payment")
    states = {dispute.payment.metadata["demo_dispute"]: dispute.status for dispute in disputes}
    assert states == {
        "demo-dp-open": "open",
        "demo-dp-evidence": "evidence_submitted",
        "demo-dp-won": "won",
        "demo-dp-lost": "lost",
        "demo-dp-accepted": "accepted",
        "demo-dp-expired": "expired",
    }
    at_channel = {dispute.channel_reference: simulator.dispute(dispute.channel_reference) for dispute in disputes}
    assert all(d.opened_by == "channel" for d in disputes)
    assert {d.payment.metadata["demo_dispute"]: at_channel[d.channel_reference]["state"] for d in disputes} == {
        "demo-dp-open": "open",
        "demo-dp-evidence": "answered",  # the channel decides it a month after the answer
        "demo-dp-won": "won",
        "demo-dp-lost": "lost",
        "demo-dp-accepted": "open",
        "demo-dp-expired": "open",
    }
    seed_all(DemoContext(scale="small", out=io.StringIO()))  # again: nothing new, nothing moved
    assert Dispute.objects.count() == 6
    assert {d.payment.metadata["demo_dispute"]: d.status for d in disputes.all()} == states
    assert len(simulator.dispute_notices(limit=100)["data"]) == 9  # six openings, the answer, two decisions


def _the_demo_login_still_sees_its_archived_months_movements() -> None:
    """One month of entries and transactions is archived (the operators' *Archived months*), and the demo login's
    statement still shows its earns of that month, its oldest movements, named; the ledger check above counted
    them."""
    from core.models import ArchivedMonth
    from members.models import Card
    from rewards import selectors
    from rewards.demo import ARCHIVED_EARNS
    from rewards.models import Entry, LedgerTransaction, Lot

    archived = ArchivedMonth.objects.get(table="rewards_entry")
    assert archived.archive_table == f"rewards_entry_archive_{archived.month:%Y%m}"
    card = Card.objects.filter(cardholder__user__username="demo", bank__points_program__active=True).order_by("pk")[0]
    wallet = selectors.cardholder_wallet(cardholder_id=card.cardholder_id, program_id=card.bank.points_program.pk)
    assert wallet is not None
    oldest = selectors.account_statement(account_id=wallet.pk, limit=len(ARCHIVED_EARNS)).lines
    assert [(line.kind, line.amount) for line in oldest] == [("earn", amount) for amount in ARCHIVED_EARNS]
    assert {line.created_at.astimezone(SHANGHAI).date().replace(day=1) for line in oldest} == {archived.month}
    assert not Entry.objects.filter(id__in=[line.entry_id for line in oldest]).exists()  # in the archive table
    transactions = ArchivedMonth.objects.get(table="rewards_ledgertransaction")
    assert (transactions.month, transactions.archive_table) == (
        archived.month,
        f"rewards_ledgertransaction_archive_{archived.month:%Y%m}",
    )
    assert not LedgerTransaction.objects.filter(id__in=[line.transaction_id for line in oldest]).exists()
    # Sealed before they went (the sealer reads the live months only): the seal chain covers them.
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE id = ANY(%s) AND seal_id IS NOT NULL").format(
                sql.Identifier(transactions.archive_table)
            ),
            [[line.transaction_id for line in oldest]],
        )
        assert cursor.fetchone()[0] == len(ARCHIVED_EARNS)
    page = selectors.account_statement(account_id=wallet.pk, limit=len(ARCHIVED_EARNS))
    named = selectors.name_sources(page, program_id=card.bank.points_program.pk)
    assert {line.source for line in named.lines} == {"Campaign bonus"}
    # Their lots stay in the wallet, naming the archived earns through their keys' rows.
    lots = Lot.objects.filter(earned_by_id__in=[line.transaction_id for line in oldest])
    assert sorted(lots.values_list("amount", flat=True)) == sorted(ARCHIVED_EARNS)
