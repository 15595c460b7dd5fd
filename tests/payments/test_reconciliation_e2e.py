"""Reconciliation end to end against the running channel simulator, for each statement layout: payments, a refund, a
same-day cancel and a payout made through the simulator over HTTP; one discrepancy of every class injected into the
channel's own statement, which comes late; the job fetches it as the beat would, asks again after its back-off, reads
it, and finds every class exactly. Fetching the same file again adds nothing; a corrected file clears the queue."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
from django.utils import timezone

from core.calendar import SHANGHAI
from merchants.models import SettlementAccount
from payments import services
from payments.models import (
    Dispute,
    PaymentIntent,
    Payout,
    ReconciliationException,
    Refund,
    StatementFetch,
    StatementImport,
)
from tests.factories import (
    CardFactory,
    CardProductFactory,
    ChannelFactory,
    MemberBankFactory,
    MerchantFactory,
    PointsProgramFactory,
    bank_operator,
    make_settlement_batch,
)

pytestmark = pytest.mark.django_db
Exc = ReconciliationException
_keys = itertools.count()

# The simulator's shipped channels, one per layout, and a currency each takes.
LAYOUTS = [
    ("acq-unionpay-a", "csv_v1", "CNY"),
    ("acq-bank-b", "csv_v2", "CNY"),
    ("acq-global-c", "fixed_v1", "USD"),
]


def far_cutoff() -> dt.time:
    """A daily cut-off twelve hours from now: the whole test runs inside one business date, whatever the hour."""
    later = (timezone.now() + dt.timedelta(hours=12)).astimezone(SHANGHAI)
    return dt.time(later.hour, later.minute)


@pytest.fixture
def shop(sim: Any, request: pytest.FixtureRequest) -> dict[str, Any]:
    """A merchant whose sponsor bank acquires and pays out through one simulated channel (the layout's), with that
    channel's cut-off moved far from now on both sides."""
    remote, fmt, currency = request.param
    cutoff = far_cutoff()
    (config,) = [c for c in sim.channels() if c["id"] == remote]
    sim.put_channel(remote, {**config, "cutoff": f"{cutoff:%H:%M}"})
    sim.set_faults(remote, payout_delay_ms=0)
    acquirer, issuer = MemberBankFactory(), MemberBankFactory()
    PointsProgramFactory(bank=issuer)
    card = CardFactory(product=CardProductFactory(bank=issuer, earning_rates={"other": "1"}))
    merchant = MerchantFactory(sponsor_bank=acquirer, spend_category="other")
    SettlementAccount.objects.create(
        merchant=merchant, account_name=merchant.legal_name, bank_name="Example Bank",
        account_encrypted="(encrypted)", account_last4="4455",
    )  # fmt: skip
    channel = ChannelFactory(
        code=f"sim-{remote}", remote_id=remote, connector="simulator", acquirer=acquirer, payouts=True,
        cutoff=cutoff, statement_format=fmt, currencies=[currency],
    )  # fmt: skip
    return {"sim": sim, "channel": channel, "merchant": merchant, "card": card, "acquirer": acquirer,
            "remote": remote, "format": fmt, "currency": currency}  # fmt: skip


def pay(shop: dict[str, Any], amount: int) -> PaymentIntent:
    intent = services.payment_create(
        merchant=shop["merchant"], cardholder=shop["card"].cardholder, card=shop["card"], amount=amount,
        currency=shop["currency"], idempotency_key=f"recon-e2e-{next(_keys)}", confirm=True,
    )  # fmt: skip
    assert (intent.status, intent.channel_id) == ("succeeded", shop["channel"].pk)
    return intent


def make_the_day(shop: dict[str, Any]) -> dict[str, str]:
    """Six payments, a partial refund, a same-day cancel (a reversal) and a settlement payout, all through the
    simulator; returns our references by role."""
    merchant = shop["merchant"]
    payments = [pay(shop, amount) for amount in (1_200, 2_300, 3_400, 4_500, 5_600, 6_700)]
    refs = {f"p{n}": intent.attempts.get().reference for n, intent in enumerate(payments)}
    refund = services.refund_create(
        merchant=merchant, payment_id=payments[0].public_id, amount=500, idempotency_key=f"recon-e2e-{next(_keys)}"
    )
    assert refund.status == "succeeded"
    canceled = services.payment_cancel(
        merchant=merchant, payment_id=payments[5].public_id, idempotency_key=f"recon-e2e-{next(_keys)}"
    )
    assert canceled.status == "canceled"
    batch = make_settlement_batch(merchant, net=8_800, currency=shop["currency"])
    services.payouts_create()
    payout = Payout.objects.get(batch=batch)
    if shop["currency"] != "CNY":  # a payout in another currency takes two operators
        services.payout_release_request(target=payout, operator=bank_operator(shop["acquirer"]))
        services.payout_release_approve(target=payout, operator=bank_operator(shop["acquirer"]))
    assert services.payouts_send().paid == 1
    payout.refresh_from_db()
    assert payout.status == "paid"
    return {**refs, "refund": refund.reference, "payout": payout.reference}


def business_date(shop: dict[str, Any], reference: str) -> dt.date:
    (row,) = [r for r in shop["sim"].journal_all(channel=shop["remote"], reference=reference) if r["op"] == "sale"]
    return dt.date.fromisoformat(row["business_date"])


def queue(day: dt.date) -> dict[tuple[str, str, str], Exc]:
    return {(e.kind, e.txn_kind, e.reference): e for e in Exc.objects.filter(business_date=day)}


@pytest.mark.parametrize("shop", LAYOUTS, indirect=True, ids=[fmt for _remote, fmt, _currency in LAYOUTS])
def test_the_channels_own_statement_is_fetched_late_and_every_class_found(shop: dict[str, Any], settings: Any) -> None:
    settings.RECON_FETCH_AFTER_MINUTES = 30
    settings.RECON_LATE_RETRY_MINUTES = 15
    sim, channel, fmt = shop["sim"], shop["channel"], shop["format"]
    refs = make_the_day(shop)
    day = business_date(shop, refs["p0"])
    start, end = services.statement_window(channel, day)
    assert start < timezone.now() < end

    # The channel's file: one discrepancy of every class, and not there until an hour from now.
    ready_at = timezone.now() + dt.timedelta(hours=1)
    sim.set_statement_faults(
        channel=shop["remote"], date=day.isoformat(), missing=[refs["p1"]], amount=[refs["p2"], refs["refund"]],
        status=[refs["p3"], refs["payout"]], duplicate=[refs["p4"]], extra=1, late_until=ready_at.isoformat(),
    )  # fmt: skip

    # The beat's run half an hour after the day's cut-off: the file is late; asked for again after the back-off.
    due = end + dt.timedelta(minutes=31)
    report = services.reconcile_due(now=due)
    assert (report.waiting, report.late, report.failed) == (1, 0, 0)
    fetch = StatementFetch.objects.get(channel=channel, business_date=day)
    assert (fetch.status, fetch.attempts, fetch.last_error) == ("waiting", 1, "statement_not_ready")
    assert fetch.next_attempt_at == due + dt.timedelta(minutes=15)
    assert not StatementImport.objects.filter(channel=channel, business_date=day).exists()

    assert services.reconcile_due(now=due + dt.timedelta(minutes=10)).skipped >= 1  # its next attempt is not due
    fetch.refresh_from_db()
    assert fetch.attempts == 1

    sim.set_clock((ready_at + dt.timedelta(minutes=1)).isoformat())  # the file is there now
    report = services.reconcile_due(now=due + dt.timedelta(minutes=15))
    assert (report.fetched, report.waiting, report.failed) == (1, 0, 0)
    fetch.refresh_from_db()
    assert (fetch.status, fetch.attempts, fetch.next_attempt_at) == ("fetched", 2, None)

    imported = StatementImport.objects.get(channel=channel, business_date=day)
    # Five captures (one left out), a copy, the reversal, the refund, the payout and one row that is not ours.
    assert (imported.format, imported.status, imported.rows, imported.errors) == (fmt, "matched", 10, [])
    counts = {name: entry["count"] for name, entry in imported.summary.items()}
    assert counts == {
        "matched": 4,  # p0, p4 (once), p5's capture and its reversal
        "missing_at_channel": 1,
        "missing_with_us": 1,
        "dispute_missing": 0,
        "amount_mismatch": 2,
        "status_mismatch": 2,
        "duplicate": 1,
    }
    found = queue(day)
    assert set(found) == {
        ("missing_at_channel", "capture", refs["p1"]),
        ("missing_with_us", "capture", "x-1"),
        ("amount_mismatch", "capture", refs["p2"]),
        ("amount_mismatch", "refund", refs["refund"]),
        ("status_mismatch", "capture", refs["p3"]),
        ("status_mismatch", "payout", refs["payout"]),
        ("duplicate", "capture", refs["p4"]),
    }
    assert all(e.status == "open" and e.statement_id == imported.pk for e in found.values())
    amount = found[("amount_mismatch", "capture", refs["p2"])]
    assert amount.our_amount == 3_400
    assert amount.channel_amount is not None
    assert 1 <= amount.channel_amount - 3_400 <= 99
    refunded = found[("amount_mismatch", "refund", refs["refund"])]
    assert refunded.our_amount == -500
    assert refunded.refund_id == Refund.objects.get(reference=refs["refund"]).pk
    assert refunded.channel_amount is not None
    assert 1 <= -500 - refunded.channel_amount <= 99
    assert found[("status_mismatch", "capture", refs["p3"])].channel_status == "failed"
    assert found[("status_mismatch", "payout", refs["payout"])].channel_status == "returned"
    assert found[("duplicate", "capture", refs["p4"])].copies == 2
    assert found[("missing_with_us", "capture", "x-1")].payment_id is None
    holding = {key for key, e in found.items() if e.holds_settlement}
    assert holding == {
        ("missing_at_channel", "capture", refs["p1"]),
        ("amount_mismatch", "capture", refs["p2"]),
        ("amount_mismatch", "refund", refs["refund"]),
        ("status_mismatch", "capture", refs["p3"]),
    }

    # The same file fetched again (by hand, or the beat once more): nothing new.
    again = services.reconcile_channel_day(channel=channel, day=day)
    assert again is not None
    assert (again.created, again.statement.pk) == (False, imported.pk)
    assert services.reconcile_due(now=due + dt.timedelta(hours=1)).fetched == 0
    assert StatementImport.objects.filter(channel=channel, business_date=day).count() == 1
    assert queue(day).keys() == found.keys()
    assert Exc.objects.filter(business_date=day).count() == 7

    # The channel corrects its file: one import more, the same exceptions closed, none added.
    sim.set_statement_faults(channel=shop["remote"], date=day.isoformat())
    corrected = services.reconcile_channel_day(channel=channel, day=day)
    assert corrected is not None
    assert corrected.created
    assert corrected.summary["matched"]["count"] == 9
    assert StatementImport.objects.get(pk=imported.pk).status == "superseded"
    assert {(e.kind, e.reference): e.status for e in queue(day).values()} == {
        (kind, reference): "superseded" for kind, _txn_kind, reference in found
    }


@pytest.mark.parametrize("shop", LAYOUTS, indirect=True, ids=[fmt for _remote, fmt, _currency in LAYOUTS])
def test_disputes_in_the_channels_statement_reconcile_once_polled(shop: dict[str, Any]) -> None:
    """Disputes raised at the channel are in its statement: those the poll brought are matched (the opening, the lost
    decision's debit), one raised after the poll is a dispute missing with us, until a re-inquiry reads the feed."""
    sim, channel, remote = shop["sim"], shop["channel"], shop["remote"]
    payments = [pay(shop, amount) for amount in (1_200, 2_300, 3_400)]
    refs = [intent.attempts.get().reference for intent in payments]
    lost = sim.open_dispute(channel=remote, reference=refs[0], kind="chargeback", amount=1_000, outcome="lost")
    sim.decide_dispute(lost["id"], "lost")
    retrieval = sim.open_dispute(channel=remote, reference=refs[1], kind="retrieval")
    report = services.disputes_poll(channel=channel)
    assert (report.opened, report.closed) == (2, 1)
    late = sim.open_dispute(channel=remote, reference=refs[2], kind="chargeback", amount=400)  # after the poll

    day = business_date(shop, refs[0])
    result = services.reconcile_channel_day(channel=channel, day=day)
    assert result is not None
    assert result.statement.rows == 3 + 4  # three captures; two openings, a decision, another opening
    by_class = {name: entry["by"] for name, entry in result.summary.items() if entry["count"]}
    assert {(b["kind"], b["count"]) for b in by_class["matched"]} == {("capture", 3), ("chargeback", 2),
                                                                      ("retrieval", 1)}  # fmt: skip
    assert set(by_class) == {"matched", "dispute_missing"}
    (missing,) = Exc.objects.filter(business_date=day)
    assert (missing.kind, missing.txn_kind, missing.channel_txn_id, missing.reference, missing.payment_id) == (
        "dispute_missing", "chargeback", late["id"], refs[2], payments[2].pk,
    )  # fmt: skip
    assert missing.channel_amount == 400
    assert Dispute.objects.get(channel_reference=lost["id"]).status == "lost"
    assert Dispute.objects.get(channel_reference=retrieval["id"]).kind == "retrieval"

    services.exception_reinquire(exception_id=missing.pk)  # reads the channel's feed again: the dispute arrives
    missing.refresh_from_db()
    assert (missing.status, missing.resolution) == ("resolved", "reinquiry")
    assert Dispute.objects.get(channel_reference=late["id"]).amount == 400
