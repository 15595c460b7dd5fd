"""Disputes in a channel's statement: the dispute rows of every layout read (a row type per kind, opened / won /
lost, the debit of a lost chargeback negative), the totals rule they follow, and the dispute rows matched against our
disputes in a pass of their own: matched, a channel dispute we never had, an amount or outcome that differs, one of
ours the statement lacks, a row listed twice."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone, translation

from core.calendar import SHANGHAI
from core.errors import PermissionDenied, ValidationFailed
from payments import services, statements
from payments.models import Dispute, PaymentIntent, ReconciliationException
from payments.statements import Row
from tests.factories import MemberBankFactory, bank_operator
from tests.payments.test_reconciliation import channel_day, load, our_rows, pay, world

pytestmark = pytest.mark.django_db
Exc = ReconciliationException
DAY = dt.date(2026, 3, 2)
AT = dt.datetime(2026, 3, 2, 15, tzinfo=SHANGHAI)
__all__ = ["world"]  # the fixture, shared with the payment rows' tests


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    with translation.override("en"):
        yield


DISPUTE_ROWS = [
    Row("capture", "s-1", "pay_5b1c", "", "CNY", 10_000, 38, "success", AT),
    Row("chargeback", "s-1", "dsp_aaa", "pay_5b1c", "CNY", 4_000, 0, "opened", AT),
    Row("chargeback", "s-1", "dsp_aaa", "pay_5b1c", "CNY", -4_000, 0, "lost", AT + dt.timedelta(minutes=5)),
    Row("retrieval", "s-2", "dsp_bbb", "pay_6c2d", "CNY", 2_000, 0, "won", AT),
    Row("error_adjustment", "s-3", "dsp_ccc", "pay_7d3e", "USD", 150, 0, "opened", AT),
]


@pytest.mark.parametrize("fmt", ["csv_v1", "csv_v2", "fixed_v1"])
def test_dispute_rows_read_back_in_every_layout(fmt: str) -> None:
    text = statements.render(fmt, "acq-unionpay-a", DAY, DISPUTE_ROWS)
    rows, warnings = services.statement_read(text=text, fmt=fmt, day=DAY)
    assert warnings == []  # the totals count the capture and the lost chargeback only
    assert [(r.kind, r.reference, r.channel_txn_id, r.currency, r.amount, r.status) for r in rows] == [
        (r.kind, r.reference, r.channel_txn_id, r.currency, r.amount, r.status) for r in DISPUTE_ROWS
    ]
    assert [r.txn_at for r in rows] == [r.txn_at for r in DISPUTE_ROWS]


def test_the_layouts_name_dispute_rows_as_acquirers_do() -> None:
    v1 = statements.render("csv_v1", "acq-unionpay-a", DAY, DISPUTE_ROWS).split("\n")
    assert v1[3].split(",")[5:] == ["chargeback", "dsp_aaa", "s-1", "", "CNY", "-4000", "0", "-4000", "lost"]
    assert v1[-2] == "T,2,,2026-03-02,acq-unionpay-a,total,,,,CNY,6000,38,5962,"  # capture + debit; USD: none
    v2 = statements.render("csv_v2", "acq-bank-b", DAY, DISPUTE_ROWS).split("\r\n")
    assert v2[3] == "20260302;150500;s-1;dsp_aaa;pay_5b1c;拒付;CNY;-40.00;0.00;败诉"
    assert v2[4].split(";")[5:] == ["调单", "CNY", "20.00", "0.00", "胜诉"]
    assert v2[5].split(";")[5:] == ["差错", "USD", "1.50", "0.00", "受理"]
    fixed = statements.render("fixed_v1", "acq-global-c", DAY, DISPUTE_ROWS).split("\n")
    assert [(line[25:27], line[130]) for line in fixed[1:6]] == [
        ("01", "S"), ("CB", "O"), ("CB", "L"), ("RR", "W"), ("EA", "O"),
    ]  # fmt: skip
    assert fixed[2][27:59].rstrip() == "dsp_aaa"
    assert fixed[2][59:99].rstrip() == "s-1"
    assert fixed[6][:29] == "T0000000005+00000000000006000"  # every record counted, the money moved added up


@pytest.mark.parametrize(
    ("fmt", "text", "message"),
    [
        ("csv_v1", statements.CSV_V1_HEADER + "\nD,1,,2026-03-02,c,chargeback,dsp_1,s-1,,CNY,4000,0,4000,lost\n",
         "line 2: a chargeback of 4000 has the wrong sign"),
        ("csv_v1", statements.CSV_V1_HEADER + "\nD,1,,2026-03-02,c,chargeback,dsp_1,s-1,,CNY,4000,0,4000,success\n",
         "line 2: unknown status success of a chargeback"),
        ("csv_v1", statements.CSV_V1_HEADER + "\nD,1,,2026-03-02,c,capture,pay_1,s-1,,CNY,4000,0,4000,opened\n",
         "line 2: unknown status opened of a capture"),
        ("csv_v2", "\ufeff" + statements.CSV_V2_HEADER + "\r\n20260302;100000;s-1;dsp_1;;拒付;CNY;-40.00;0.00;受理\r\n",
         "line 2: a 拒付 of -40.00 has the wrong sign"),
    ],
)  # fmt: skip
def test_a_dispute_row_that_cannot_be_right_is_named(fmt: str, text: str, message: str) -> None:
    with pytest.raises(statements.StatementError) as caught:
        services.statement_read(text=text, fmt=fmt, day=DAY)
    assert str(caught.value) == message


def test_a_fixed_width_retrieval_lost_moves_no_money() -> None:
    rows = [Row("retrieval", "s-2", "dsp_bbb", "", "CNY", 2_000, 0, "lost", AT)]
    text = statements.render("fixed_v1", "acq-global-c", DAY, rows)
    assert text.split("\n")[2][:29] == "T0000000001+00000000000000000"
    assert services.statement_read(text=text, fmt="fixed_v1", day=DAY) == (
        [rows[0]._replace(line=2)],
        [],
    )


# --- matching ---------------------------------------------------------------------------------------------------------


def open_dispute(payment: PaymentIntent, reference: str, amount: int, kind: str = "chargeback") -> Dispute:
    return services.dispute_open(
        payment=payment, kind=kind, amount=amount, opened_by=Dispute.OpenedBy.CHANNEL, channel_reference=reference
    )


def ref(payment: PaymentIntent) -> str:
    return payment.attempts.get(status="captured").reference


def dispute_row(payment: PaymentIntent, txn: str, amount: int, status: str, kind: str = "chargeback") -> Row:
    return Row(kind, ref(payment), txn, "", "CNY", amount, 0, status, timezone.now())


@pytest.fixture
def disputed(world: dict[str, Any]) -> dict[str, Any]:
    """Seven payments and our disputes of today: matched (opened; opened and lost), an amount that differs, a decision
    the other way, one the statement will lack, and one an operator opened by hand (no channel id)."""
    p = [pay(world, amount) for amount in (10_000, 20_000, 30_000, 40_000, 50_000, 60_000, 70_000)]
    open_dispute(p[0], "dsp_open", 10_000)
    lost = open_dispute(p[1], "dsp_lost", 5_000)
    services.dispute_outcome_record(dispute_id=lost.pk, outcome="lost")
    open_dispute(p[3], "dsp_amount", 1_000)
    won = open_dispute(p[4], "dsp_won", 50_000)
    services.dispute_outcome_record(dispute_id=won.pk, outcome="won")
    open_dispute(p[5], "dsp_absent", 600, kind="error_adjustment")
    services.dispute_open(payment=p[6], kind="retrieval", actor=bank_operator(world["channel"].acquirer))
    return {"p": p}


def dispute_exceptions() -> dict[tuple[str, str, str], Exc]:
    return {(e.kind, e.txn_kind, e.channel_txn_id or e.reference): e for e in Exc.objects.all()}


@pytest.mark.parametrize("fmt", ["csv_v1", "csv_v2", "fixed_v1"])
def test_dispute_rows_are_matched_and_every_difference_found(
    world: dict[str, Any], disputed: dict[str, Any], fmt: str
) -> None:
    p = disputed["p"]
    statement = [
        *our_rows(world),
        dispute_row(p[0], "dsp_open", 10_000, "opened"),  # matched
        dispute_row(p[1], "dsp_lost", 5_000, "opened"),  # matched
        dispute_row(p[1], "dsp_lost", -5_000, "lost"),  # matched: the debit
        dispute_row(p[2], "dsp_never", 30_000, "opened"),  # the channel's, never ours
        dispute_row(p[3], "dsp_amount", 1_200, "opened"),  # amount
        dispute_row(p[4], "dsp_won", 50_000, "opened"),  # matched
        dispute_row(p[4], "dsp_won", -50_000, "lost"),  # outcome: lost there, won here
        # dsp_absent: ours, not on the statement
        dispute_row(p[6], "dsp_by_hand", 70_000, "opened", kind="retrieval"),  # matched by our payment's reference
        dispute_row(p[6], "dsp_by_hand", 70_000, "opened", kind="retrieval"),  # listed twice
    ]
    result = load(world, statement, fmt)
    counts = {name: entry["count"] for name, entry in result.summary.items()}
    assert counts == {
        "matched": 7 + 5,  # the seven captures; the dispute rows above marked matched
        "missing_at_channel": 1,
        "missing_with_us": 0,
        "dispute_missing": 1,
        "amount_mismatch": 1,
        "status_mismatch": 1,
        "duplicate": 1,
    }
    found = dispute_exceptions()
    assert set(found) == {
        ("dispute_missing", "chargeback", "dsp_never"),
        ("amount_mismatch", "chargeback", "dsp_amount"),
        ("status_mismatch", "chargeback", "dsp_won"),
        ("missing_at_channel", "error_adjustment", "dsp_absent"),
        ("duplicate", "retrieval", "dsp_by_hand"),
    }
    never = found[("dispute_missing", "chargeback", "dsp_never")]
    assert (never.payment_id, never.reference, never.channel_amount, never.our_amount) == (
        p[2].pk, ref(p[2]), 30_000, None,
    )  # fmt: skip
    amount = found[("amount_mismatch", "chargeback", "dsp_amount")]
    assert (amount.our_amount, amount.channel_amount, amount.payment_id) == (1_000, 1_200, p[3].pk)
    outcome = found[("status_mismatch", "chargeback", "dsp_won")]
    assert (outcome.our_status, outcome.channel_status, outcome.our_amount, outcome.channel_amount) == (
        "won", "lost", 50_000, -50_000,
    )  # fmt: skip
    absent = found[("missing_at_channel", "error_adjustment", "dsp_absent")]
    assert (absent.our_status, absent.our_amount, absent.reference) == ("opened", 600, ref(p[5]))
    assert found[("duplicate", "retrieval", "dsp_by_hand")].copies == 2
    assert not any(e.holds_settlement for e in found.values())  # the disputes hold what they hold themselves
    assert result.statement.rows == len(statement)

    # The same problems from the same day's corrected file: the same exceptions, never a second of each.
    again = load(world, [*statement, dispute_row(p[5], "dsp_absent", 600, "opened", kind="error_adjustment")], fmt)
    assert again.summary["missing_at_channel"]["count"] == 0
    assert Exc.objects.count() == 5
    assert Exc.objects.get(channel_txn_id="dsp_absent").status == "superseded"
    assert Exc.objects.filter(status="open").count() == 4


def test_a_decision_we_have_not_had_is_an_outcome_mismatch(world: dict[str, Any]) -> None:
    payment = pay(world, 10_000)
    open_dispute(payment, "dsp_pending", 10_000)
    result = load(world, [*our_rows(world), dispute_row(payment, "dsp_pending", 10_000, "opened"),
                          dispute_row(payment, "dsp_pending", -10_000, "lost")])  # fmt: skip
    assert result.summary["status_mismatch"]["count"] == 1
    mismatch = Exc.objects.get(kind="status_mismatch")
    assert (mismatch.txn_kind, mismatch.our_status, mismatch.channel_status) == ("chargeback", "opened", "lost")


def test_a_dispute_missing_with_us_is_resolved_on_re_inquiry_once_the_feed_brings_it(world: dict[str, Any]) -> None:
    from payments.connectors import get_connector

    payment = pay(world, 10_000)
    load(world, [*our_rows(world), dispute_row(payment, "dsp_late", 3_000, "opened")])
    missing = Exc.objects.get(kind="dispute_missing")
    assert (missing.txn_kind, missing.channel_txn_id, missing.payment_id) == ("chargeback", "dsp_late", payment.pk)
    services.exception_reinquire(exception_id=missing.pk)
    missing.refresh_from_db()
    assert missing.status == "open"  # the feed has nothing yet
    connector = get_connector(world["channel"].connector)
    connector.dispute_notice_add(  # type: ignore[attr-defined]
        world["channel"].remote_id or world["channel"].code, dispute_reference="dsp_late",
        payment_reference=ref(payment), kind="chargeback", amount=3_000, currency="CNY", at=timezone.now(),
    )  # fmt: skip
    services.exception_reinquire(exception_id=missing.pk)
    missing.refresh_from_db()
    assert (missing.status, missing.resolution) == ("resolved", "reinquiry")
    assert Dispute.objects.get(channel_reference="dsp_late").amount == 3_000


def test_an_operator_opens_a_missing_dispute_from_the_statement_and_its_late_notice_finds_it(
    world: dict[str, Any],
) -> None:
    from payments.connectors import get_connector

    payment = pay(world, 10_000)
    load(world, [*our_rows(world), dispute_row(payment, "dsp_never_sent", 4_000, "opened")])
    missing = Exc.objects.get(kind="dispute_missing")
    operator = bank_operator(world["channel"].acquirer)
    with pytest.raises(PermissionDenied):  # another bank's operator
        services.exception_accept_channel(exception_id=missing.pk, operator=bank_operator(MemberBankFactory()))
    services.exception_accept_channel(exception_id=missing.pk, operator=operator)
    missing.refresh_from_db()
    assert (missing.status, missing.resolution) == ("resolved", "accept_channel")
    dispute = Dispute.objects.get(channel_reference="dsp_never_sent")
    assert (dispute.payment_id, dispute.kind, dispute.amount, dispute.opened_by) == (
        payment.pk, "chargeback", 4_000, "channel",
    )  # fmt: skip
    assert dispute.public_id in missing.note
    payment.refresh_from_db()
    assert payment.amount_disputed == 4_000
    # The channel's notice, when it comes, finds the dispute: nothing opened twice.
    connector = get_connector(world["channel"].connector)
    connector.dispute_notice_add(  # type: ignore[attr-defined]
        world["channel"].remote_id or world["channel"].code, dispute_reference="dsp_never_sent",
        payment_reference=ref(payment), kind="chargeback", amount=4_000, currency="CNY", at=timezone.now(),
    )  # fmt: skip
    services.disputes_poll(channel=world["channel"])
    assert Dispute.objects.filter(payment=payment).count() == 1
    payment.refresh_from_db()
    assert payment.amount_disputed == 4_000


def test_an_unreadable_dispute_row_refuses_the_whole_file(world: dict[str, Any]) -> None:
    channel = world["channel"]
    day = channel_day(channel, timezone.now())
    text = statements.CSV_V1_HEADER + f"\nD,1,,{day},c,chargeback,dsp_1,s-1,,CNY,0,0,0,opened\n"
    with pytest.raises(ValidationFailed):
        services.statement_import(channel=channel, day=day, text=text, fmt="csv_v1")
    assert not Exc.objects.exists()
