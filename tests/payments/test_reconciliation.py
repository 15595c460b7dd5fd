"""Reconciliation (对账): each statement layout read, every class found, re-imports that add nothing, the queue's
actions and their effects, the late file, settlement's hold, and who may act."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone, translation

from core.approvals import approval_approve, approval_describe, approval_reject, approvals_waiting_for
from core.calendar import SHANGHAI
from core.errors import Conflict, PermissionDenied, ValidationFailed
from merchants.models import Event
from payments import services, statements
from payments.models import (
    PaymentIntent,
    Payout,
    ReconciliationException,
    Refund,
    SettlementBatch,
    SettlementLine,
    StatementFetch,
    StatementImport,
)
from payments.services import reconciliation
from payments.statements import Row
from rewards.models import Account, Entry, LedgerTransaction
from tests.factories import PASSWORD, bank_operator

pytestmark = pytest.mark.django_db
Exc = ReconciliationException
_keys = itertools.count()
DAY = dt.date(2026, 3, 2)


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    """Messages and notes are asserted in English (a note is written in the acting operator's language)."""
    with translation.override("en"):
        yield


def key() -> str:
    return f"recon-{next(_keys)}"


# --- the layouts ------------------------------------------------------------------------------------------------------

SAMPLE_ROWS = [
    Row("capture", "s-1", "pay_5b1c", "", "CNY", 10_000, 38, "success", dt.datetime(2026, 3, 2, 10, tzinfo=SHANGHAI)),
    Row("refund", "s-1-r1", "re_77f0", "pay_5b1c", "CNY", -2_500, 0, "success",
        dt.datetime(2026, 3, 2, 10, 0, 1, tzinfo=SHANGHAI)),
    Row("reversal", "s-3", "pay_c2d4", "pay_c2d4", "CNY", -3_000, 0, "success",
        dt.datetime(2026, 3, 2, 10, 0, 2, tzinfo=SHANGHAI)),
    Row("capture", "s-6", "pay_4e21", "", "JPY", 1_200, 5, "failed", dt.datetime(2026, 3, 2, 11, tzinfo=SHANGHAI)),
    Row("payout", "stl_1-p1", "po_9", "", "CNY", 50_000, 0, "returned", dt.datetime(2026, 3, 2, 12, tzinfo=SHANGHAI)),
]  # fmt: skip


@pytest.mark.parametrize("fmt", ["csv_v1", "csv_v2", "fixed_v1"])
def test_each_layout_reads_back_what_was_written(fmt: str) -> None:
    text = statements.render(fmt, "acq-unionpay-a", DAY, SAMPLE_ROWS)
    rows, warnings = services.statement_read(text=text, fmt=fmt, day=DAY)
    assert warnings == []
    assert [(r.kind, r.reference, r.channel_txn_id, r.currency, r.amount, r.status) for r in rows] == [
        (r.kind, r.reference, r.channel_txn_id, r.currency, r.amount, r.status) for r in SAMPLE_ROWS
    ]
    assert [r.txn_at for r in rows] == [r.txn_at for r in SAMPLE_ROWS]
    assert [r.fee for r in rows] == [38, 0, 0, 5, 0]


def test_csv_v2_as_the_bank_writes_it() -> None:
    text = (
        "\ufeff交易日期;交易时间;商户订单号;渠道流水号;原交易流水号;交易类型;币种;交易金额;手续费;状态\r\n"
        "20260302;100000;s-1;pay_5b1c;;消费;CNY;100.00;0.38;成功\r\n"
        "20260302;100001;s-1-r1;re_77f0;pay_5b1c;退货;CNY;-25.00;0.00;成功\r\n"
        "20260302;100002;s-6;pay_4e21;;消费;JPY;1200;5;失败\r\n"
    )
    rows, _warnings = services.statement_read(text=text, fmt="csv_v2", day=DAY)
    assert rows[0][:8] == ("capture", "s-1", "pay_5b1c", "", "CNY", 10_000, 38, "success")
    assert rows[1][:8] == ("refund", "s-1-r1", "re_77f0", "pay_5b1c", "CNY", -2_500, 0, "success")
    assert rows[2][:8] == ("capture", "s-6", "pay_4e21", "", "JPY", 1_200, 5, "failed")
    assert rows[0].txn_at == dt.datetime(2026, 3, 2, 10, tzinfo=SHANGHAI)


def test_csv_v2_times_after_the_cut_off_belong_to_the_evening_before() -> None:
    """The bank's layout gives the business date and a time of day; its day runs from the cut-off (23:00) the evening
    before, so 23:30 on the 2 March statement is 1 March 23:30, and 22:59:59 is 2 March."""
    text = (
        "\ufeff交易日期;交易时间;商户订单号;渠道流水号;原交易流水号;交易类型;币种;交易金额;手续费;状态\r\n"
        "20260302;233000;s-1;pay_5b1c;;消费;CNY;100.00;0.38;成功\r\n"
        "20260302;225959;s-2;pay_6c2d;;消费;CNY;100.00;0.38;成功\r\n"
        "20260302;230000;s-3;pay_7d3e;;消费;CNY;100.00;0.38;成功\r\n"
    )
    rows, _warnings = services.statement_read(text=text, fmt="csv_v2", day=DAY)
    assert [row.txn_at for row in rows] == [
        dt.datetime(2026, 3, 1, 23, 30, tzinfo=SHANGHAI),
        dt.datetime(2026, 3, 2, 22, 59, 59, tzinfo=SHANGHAI),
        dt.datetime(2026, 3, 1, 23, 0, tzinfo=SHANGHAI),
    ]


def test_fixed_width_columns_are_where_the_layout_puts_them() -> None:
    text = statements.render("fixed_v1", "acq-global-c", DAY, SAMPLE_ROWS[:2])
    header, first, second, trailer = text.split("\n")[:4]
    assert all(len(line) == 160 for line in (header, first, second, trailer))
    assert header[0] == "H"
    assert header[1:21].rstrip() == "acq-global-c"
    assert header[21:29] == "20260302"
    assert first[1:11] == "0000000001"
    assert first[11:25] == "20260302100000"
    assert first[25:27] == "01"
    assert first[27:59].rstrip() == "pay_5b1c"
    assert first[59:99].rstrip() == "s-1"
    assert first[99:102] == "CNY"
    assert first[102] == "+"
    assert first[103:118] == "000000000010000"
    assert first[118:130] == "000000000038"
    assert first[130] == "S"
    assert second[25:27] == "02"
    assert second[102] == "-"
    assert trailer[:11] == "T0000000002"
    assert trailer[11:29] == "+00000000000007500"


def test_csv_v1_reads_the_refund_reference_from_operation_reference() -> None:
    text = (
        f"{statements.CSV_V1_HEADER}\n"
        "D,4,2026-03-02T10:00:01+08:00,2026-03-02,acq-unionpay-a,refund,re_77f0,s-1,s-1-r1,CNY,-2500,0,-2500,success\n"
        "T,1,,2026-03-02,acq-unionpay-a,total,,,,CNY,-2500,0,-2500,\n"
    )
    (row,), warnings = services.statement_read(text=text, fmt="csv_v1", day=DAY)
    assert (row.kind, row.reference, row.channel_txn_id, row.amount) == ("refund", "s-1-r1", "re_77f0", -2500)
    assert warnings == []


@pytest.mark.parametrize(
    ("fmt", "text", "message"),
    [
        ("csv_v1", "record,seq\n", "not a csv_v1 header"),
        ("csv_v1", f"{statements.CSV_V1_HEADER}\nD,1,,2026-03-03,c,capture,t,r,,CNY,100,0,100,success\n", "2026-03-03"),
        ("csv_v1", f"{statements.CSV_V1_HEADER}\nD,1,,2026-03-02,c,capture,t,r,,CNY,-100,0,-100,success\n", "sign"),
        (
            "csv_v2",
            "\ufeff" + statements.CSV_V2_HEADER + "\r\n20260302;100000;s;t;;消费;CNY;1.001;0;成功\r\n",
            "decimals",
        ),
        ("fixed_v1", "H" + " " * 20 + "20260302\n", "characters"),
    ],
)
def test_an_unreadable_line_is_named(fmt: str, text: str, message: str) -> None:
    with pytest.raises(statements.StatementError) as raised:
        services.statement_read(text=text, fmt=fmt, day=DAY)
    assert message in str(raised.value)


def test_totals_that_do_not_add_up_are_a_warning() -> None:
    text = statements.render("fixed_v1", "c", DAY, SAMPLE_ROWS[:1]).replace("T0000000001", "T0000000002")
    rows, warnings = services.statement_read(text=text, fmt="fixed_v1", day=DAY)
    assert len(rows) == 1
    assert warnings
    assert "trailer says 2" in warnings[0]


def test_csv_v1_totals_leave_payouts_out_as_the_channel_does() -> None:
    text = (
        f"{statements.CSV_V1_HEADER}\n"
        "D,1,2026-03-02T10:00:00+08:00,2026-03-02,c,capture,pay_1,s-1,,CNY,10000,38,9962,success\n"
        "D,2,2026-03-02T12:00:00+08:00,2026-03-02,c,payout,po_9,stl_1-p1,,CNY,50000,0,50000,success\n"
        "T,1,,2026-03-02,c,total,,,,CNY,10000,38,9962,\n"
    )
    rows, warnings = services.statement_read(text=text, fmt="csv_v1", day=DAY)
    assert ([row.kind for row in rows], warnings) == (["capture", "payout"], [])
    wrong = text.replace("T,1,", "T,2,").replace("CNY,10000,38,9962,\n", "CNY,60000,38,59962,\n")
    _rows, warnings = services.statement_read(text=wrong, fmt="csv_v1", day=DAY)
    assert warnings == ["total CNY says 2 rows, 60000; the rows add up to 1 rows, 10000"]


# --- a world of payments through the services ---------------------------------------------------------------------


@pytest.fixture
def world(recon_world: dict[str, Any]) -> dict[str, Any]:
    return recon_world


def pay(world: dict[str, Any], amount: int) -> PaymentIntent:
    return services.payment_create(
        merchant=world["merchant"],
        cardholder=world["card"].cardholder,
        card=world["card"],
        amount=amount,
        currency="CNY",
        idempotency_key=key(),
        confirm=True,
    )


def channel_day(channel: Any, moment: dt.datetime) -> dt.date:
    local = moment.astimezone(SHANGHAI)
    return local.date() + dt.timedelta(days=1 if local.time() >= channel.cutoff else 0)


def our_rows(world: dict[str, Any]) -> list[Row]:
    """What the channel's statement would say of our day, row for row."""
    rows = []
    for intent in PaymentIntent.objects.filter(channel=world["channel"], captured_at__isnull=False).order_by("pk"):
        attempt = intent.attempts.get(status__in=["captured", "reversed"])
        rows.append(Row("capture", attempt.reference, attempt.channel_reference, "", intent.currency,
                        intent.amount_captured, 0, "success", intent.captured_at))  # fmt: skip
        for refund in intent.refunds.filter(status="succeeded"):
            rows.append(Row("refund", refund.reference, refund.channel_reference or f"re-{refund.pk}",
                            attempt.channel_reference, intent.currency, -refund.amount, 0, "success",
                            refund.completed_at))  # fmt: skip
    return rows


def load(world: dict[str, Any], rows: list[Row], fmt: str = "csv_v1") -> services.ImportResult:
    channel = world["channel"]
    day = channel_day(channel, timezone.now())
    text = statements.render(fmt, channel.code, day, rows)
    return services.statement_import(channel=channel, day=day, text=text, fmt=fmt)


def exceptions(**filters: Any) -> dict[tuple[str, str], Exc]:
    return {(e.kind, e.reference): e for e in Exc.objects.filter(**filters)}


@pytest.fixture
def day_of_payments(world: dict[str, Any]) -> dict[str, Any]:
    payments = [pay(world, amount) for amount in (10_000, 20_000, 30_000, 40_000, 50_000, 60_000)]
    refunded = payments[5]
    services.refund_create(
        merchant=world["merchant"], payment_id=refunded.public_id, idempotency_key=key(), amount=1_000
    )
    refs = [p.attempts.get().reference for p in payments]
    return {"payments": payments, "refs": refs}


@pytest.mark.parametrize("fmt", ["csv_v1", "csv_v2", "fixed_v1"])
def test_every_class_is_found_once(world: dict[str, Any], day_of_payments: dict[str, Any], fmt: str) -> None:
    rows = our_rows(world)
    refs = day_of_payments["refs"]
    by_ref = {row.reference: row for row in rows}
    statement = [
        by_ref[refs[0]],  # matched
        # refs[1] missing at the channel
        by_ref[refs[2]]._replace(amount=by_ref[refs[2]].amount + 7),  # amount mismatch
        by_ref[refs[3]]._replace(status="failed"),  # status mismatch
        by_ref[refs[4]],
        by_ref[refs[4]],  # duplicate
        by_ref[refs[5]],
        *[row for row in rows if row.kind == "refund"],
        Row("capture", "x-1", "sim-x-1", "", "CNY", 777, 0, "success", timezone.now()),  # missing with us
    ]
    result = load(world, statement, fmt)
    counts = {name: entry["count"] for name, entry in result.summary.items()}
    assert counts == {
        "matched": 4,  # refs 0, 4 (once), 5 and the refund
        "missing_at_channel": 1,
        "missing_with_us": 1,
        "dispute_missing": 0,
        "amount_mismatch": 1,
        "status_mismatch": 1,
        "duplicate": 1,
    }
    found = exceptions()
    assert set(found) == {
        ("missing_at_channel", refs[1]),
        ("amount_mismatch", refs[2]),
        ("status_mismatch", refs[3]),
        ("duplicate", refs[4]),
        ("missing_with_us", "x-1"),
    }
    assert found[("amount_mismatch", refs[2])].channel_amount == 30_007
    assert found[("amount_mismatch", refs[2])].our_amount == 30_000
    assert found[("status_mismatch", refs[3])].channel_status == "failed"
    assert found[("duplicate", refs[4])].copies == 2
    holds = {k for k, e in found.items() if e.holds_settlement}
    assert holds == {("missing_at_channel", refs[1]), ("amount_mismatch", refs[2]), ("status_mismatch", refs[3])}
    assert found[("missing_at_channel", refs[1])].payment_id == day_of_payments["payments"][1].pk
    assert result.statement.rows == len(statement)


def test_a_statement_loads_through_the_debug_cursor(world: dict[str, Any], day_of_payments: dict[str, Any]) -> None:
    """With DEBUG on (or queries captured) Django wraps the cursor, and its COPY takes positional arguments only."""
    with CaptureQueriesContext(connection) as queries:
        load(world, our_rows(world))
    assert any(query["sql"].startswith("COPY") for query in queries.captured_queries)
    assert not Exc.objects.exists()


def test_a_refund_missing_at_the_channel_is_found(world: dict[str, Any], day_of_payments: dict[str, Any]) -> None:
    rows = [row for row in our_rows(world) if row.kind != "refund"]
    load(world, rows)
    (exception,) = Exc.objects.all()
    refund = Refund.objects.get()
    assert (exception.kind, exception.txn_kind, exception.refund_id) == ("missing_at_channel", "refund", refund.pk)
    assert exception.holds_settlement


def test_rows_without_a_reference_match_by_amount_and_time(
    world: dict[str, Any], day_of_payments: dict[str, Any]
) -> None:
    rows = our_rows(world)
    anonymous = [row._replace(reference="", channel_txn_id="") for row in rows[:3]]
    result = load(world, anonymous + rows[3:], "csv_v2")
    assert result.summary["matched"]["count"] == len(rows)
    assert not Exc.objects.exists()


def test_the_same_file_again_changes_nothing(world: dict[str, Any], day_of_payments: dict[str, Any]) -> None:
    rows = our_rows(world)[1:]
    first = load(world, rows)
    again = load(world, rows)
    assert again.statement.pk == first.statement.pk
    assert not again.created
    assert StatementImport.objects.count() == 1
    assert Exc.objects.count() == 1


def test_a_corrected_file_supersedes_without_duplicates(world: dict[str, Any], day_of_payments: dict[str, Any]) -> None:
    rows = our_rows(world)
    refs = day_of_payments["refs"]
    first = load(world, [row for row in rows if row.reference not in refs[:2]])
    assert Exc.objects.filter(status="open").count() == 2
    # The corrected file has the first payment, and still not the second.
    second = load(world, [row for row in rows if row.reference != refs[1]], "csv_v1")
    assert second.created
    assert second.statement.pk != first.statement.pk
    first.statement.refresh_from_db()
    assert first.statement.status == StatementImport.Status.SUPERSEDED
    assert Exc.objects.count() == 2  # no new row for the problem both files show
    assert Exc.objects.get(reference=refs[0]).status == Exc.Status.SUPERSEDED
    still = Exc.objects.get(reference=refs[1])
    assert (still.status, still.statement_id) == (Exc.Status.OPEN, second.statement.pk)


def test_an_unreadable_file_is_refused_and_nothing_is_kept(world: dict[str, Any]) -> None:
    channel = world["channel"]
    with pytest.raises(ValidationFailed):
        services.statement_import(channel=channel, day=DAY, text="nonsense\n", fmt="csv_v1")
    failed = StatementImport.objects.get()
    assert failed.status == StatementImport.Status.FAILED
    assert failed.errors
    assert not Exc.objects.exists()
    with pytest.raises(ValidationFailed):
        services.statement_import(channel=channel, day=DAY, text="nonsense\n", fmt="csv_v1")


# --- the actions --------------------------------------------------------------------------------------------------


@pytest.fixture
def operators(world: dict[str, Any]) -> tuple[Any, Any]:
    bank = world["channel"].acquirer
    return bank_operator(bank), bank_operator(bank)


def test_accepting_the_channel_reverses_a_payment_it_never_captured(
    world: dict[str, Any], day_of_payments: dict[str, Any], operators: tuple[Any, Any]
) -> None:
    refs = day_of_payments["refs"]
    load(world, [row for row in our_rows(world) if row.reference != refs[1]])
    exception = Exc.objects.get(reference=refs[1])
    payment = day_of_payments["payments"][1]
    assert payment.points_earned > 0
    assert payment.fee > 0
    services.exception_accept_channel(exception_id=exception.pk, operator=operators[0])
    payment.refresh_from_db()
    assert payment.status == PaymentIntent.Status.CANCELED
    assert payment.cancellation_reason == "reconciliation"
    assert payment.points_reversed == payment.points_earned
    assert payment.fee_returned == payment.fee
    assert payment.attempts.get().status == "reversed"
    assert Event.objects.filter(type="payment.canceled", object_id=payment.public_id).exists()
    exception.refresh_from_db()
    assert (exception.status, exception.resolution) == (Exc.Status.RESOLVED, Exc.Resolution.ACCEPT_CHANNEL)
    assert exception.resolved_by == operators[0]
    from core.models import AuditLog

    assert AuditLog.objects.filter(action="reconciliation.accept_channel", object_id=str(exception.pk)).exists()
    with pytest.raises(Conflict):
        services.exception_accept_channel(exception_id=exception.pk, operator=operators[0])


def test_accepting_a_smaller_channel_amount_records_a_correction_refund(
    world: dict[str, Any], day_of_payments: dict[str, Any], operators: tuple[Any, Any]
) -> None:
    refs = day_of_payments["refs"]
    rows = [row._replace(amount=row.amount - 2_000) if row.reference == refs[2] else row for row in our_rows(world)]
    load(world, rows)
    exception = Exc.objects.get(reference=refs[2], kind="amount_mismatch")
    services.exception_accept_channel(exception_id=exception.pk, operator=operators[0])
    payment = day_of_payments["payments"][2]
    payment.refresh_from_db()
    refund = Refund.objects.get(intent=payment)
    assert (refund.amount, refund.status) == (2_000, Refund.Status.SUCCEEDED)
    assert refund.channel_reference.startswith("recon:")
    assert payment.amount_refunded == 2_000
    assert payment.points_reversed > 0
    # The next statement does not have the correction refund, and that is not a problem.
    rows = our_rows(world)
    day = channel_day(world["channel"], timezone.now())
    text = statements.render("csv_v1", world["channel"].code, day, [r for r in rows if r.reference != refund.reference])
    services.statement_import(channel=world["channel"], day=day, text=text, fmt="csv_v1")
    assert not Exc.objects.filter(status="open", reference=refund.reference).exists()


def channel_has_more(world: dict[str, Any], reference: str, more: int) -> ReconciliationException:
    """Our day on the statement, but the channel's capture of `reference` for `more` than ours: its exception."""
    rows = our_rows(world)
    load(world, [row._replace(amount=row.amount + more) if row.reference == reference else row for row in rows])
    return Exc.objects.get(reference=reference)


def test_a_larger_channel_amount_cannot_be_taken_over(
    world: dict[str, Any], day_of_payments: dict[str, Any], operators: tuple[Any, Any]
) -> None:
    refs = day_of_payments["refs"]
    exception = channel_has_more(world, refs[2], 5)
    with pytest.raises(Conflict) as raised:
        services.exception_accept_channel(exception_id=exception.pk, operator=operators[0])
    assert raised.value.code == "action_not_available"
    exception.refresh_from_db()
    assert exception.status == Exc.Status.OPEN


def test_accepting_ours_flags_it_and_changes_no_payment(
    world: dict[str, Any], day_of_payments: dict[str, Any], operators: tuple[Any, Any]
) -> None:
    refs = day_of_payments["refs"]
    load(world, [row._replace(status="failed") if row.reference == refs[3] else row for row in our_rows(world)])
    exception = Exc.objects.get(reference=refs[3])
    services.exception_accept_ours(exception_id=exception.pk, operator=operators[0], note="ask for a correction")
    exception.refresh_from_db()
    assert (exception.status, exception.resolution) == (Exc.Status.RESOLVED, Exc.Resolution.ACCEPT_OURS)
    assert "Flagged for the channel" in exception.note
    assert "ask for a correction" in exception.note
    assert PaymentIntent.objects.get(pk=exception.payment_id).status == PaymentIntent.Status.SUCCEEDED


def test_a_write_off_takes_a_second_operator_and_posts_to_the_loss_account(
    world: dict[str, Any], day_of_payments: dict[str, Any], operators: tuple[Any, Any]
) -> None:
    refs = day_of_payments["refs"]
    exception = channel_has_more(world, refs[2], 123)
    first, second = operators
    request = services.exception_write_off_request(exception_id=exception.pk, operator=first)
    exception.refresh_from_db()
    assert (exception.status, exception.write_off_amount) == (Exc.Status.OPEN, None)  # open until approved
    assert (request.kind, request.maker, request.bank_id) == ("payments.write_off", first, world["channel"].acquirer_id)
    assert (request.payload["exception_id"], request.payload["amount"]) == (exception.pk, 123)
    assert request in approvals_waiting_for(second)
    assert request not in approvals_waiting_for(first)
    with translation.override("en"):
        shown_rows = dict(approval_describe(request))
    assert (shown_rows["reference"], shown_rows["write-off"]) == (refs[2], "1.23 CNY")
    with pytest.raises(Conflict) as pending:  # asked for already; nor may another action overtake it
        services.exception_write_off_request(exception_id=exception.pk, operator=second)
    assert pending.value.code == "write_off_pending"
    with pytest.raises(Conflict):
        services.exception_accept_ours(exception_id=exception.pk, operator=second)
    with pytest.raises(PermissionDenied) as refused:
        services.exception_write_off_approve(exception_id=exception.pk, operator=first)
    assert refused.value.code == "second_operator_required"
    assert not LedgerTransaction.objects.filter(kind="write_off").exists()
    services.exception_write_off_approve(exception_id=exception.pk, operator=second)
    exception.refresh_from_db()
    assert (exception.status, exception.resolution) == (Exc.Status.RESOLVED, Exc.Resolution.WRITE_OFF)
    assert (exception.write_off_amount, exception.resolved_by) == (123, second)
    txn = LedgerTransaction.objects.get(kind="write_off")
    assert exception.write_off_transaction_id == txn.pk
    request.refresh_from_db()
    assert (request.status, request.checker) == ("approved", second)
    assert (request.result_type, request.result_id) == ("rewards.ledgertransaction", str(txn.pk))
    legs = {(e.account.purpose, e.account.owner_id): e.amount for e in Entry.objects.filter(transaction=txn)}
    bank_id = world["channel"].acquirer_id
    assert legs == {("loss", bank_id): -12_300, ("suspense", bank_id): 12_300}
    assert Account.objects.get(purpose="loss", owner_id=bank_id).posted == -12_300


def test_the_admin_asks_the_write_off_makers_reason(
    world: dict[str, Any], day_of_payments: dict[str, Any], operators: tuple[Any, Any]
) -> None:
    from django.test import Client
    from django.urls import reverse

    refs = day_of_payments["refs"]
    exception = channel_has_more(world, refs[2], 5)
    client = Client()
    assert client.login(username=operators[0].username, password=PASSWORD)
    url = reverse("admin:payments_reconciliationexception_changelist")
    form = {"action": "request_write_off", "_selected_action": [exception.pk]}
    asked = client.post(url, form)
    assert 'name="reason"' in asked.content.decode()
    assert refs[2] in asked.content.decode()  # the rows the request is for are listed
    assert not services.write_off_requests_pending(exception.pk).exists()
    client.post(url, {**form, "post": "yes", "reason": "Rounding at the channel, confirmed by its desk"})
    request = services.write_off_requests_pending(exception.pk).get()
    assert (request.maker, request.reason) == (operators[0], "Rounding at the channel, confirmed by its desk")


def test_a_rejected_write_off_leaves_the_exception_open_and_holding(
    world: dict[str, Any], day_of_payments: dict[str, Any], operators: tuple[Any, Any]
) -> None:
    refs = day_of_payments["refs"]
    exception = channel_has_more(world, refs[2], 123)
    first, second = operators
    request = services.exception_write_off_request(exception_id=exception.pk, operator=first, note="rounding")
    assert request.reason == "rounding"
    approval_reject(request_id=request.pk, checker=second, reason="ask the channel first")
    exception.refresh_from_db()
    assert (exception.status, exception.resolution) == (Exc.Status.OPEN, Exc.Resolution.NONE)
    assert not LedgerTransaction.objects.filter(kind="write_off").exists()
    services.exception_accept_ours(exception_id=exception.pk, operator=second)  # free for other actions again


def test_applying_a_write_off_is_atomic(
    world: dict[str, Any], day_of_payments: dict[str, Any], operators: tuple[Any, Any], monkeypatch: Any
) -> None:
    """A write-off that fails after posting undoes the posting with the approval: the request waits, the exception
    stays open."""
    refs = day_of_payments["refs"]
    exception = channel_has_more(world, refs[2], 123)
    first, second = operators
    request = services.exception_write_off_request(exception_id=exception.pk, operator=first)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("audit store down")

    monkeypatch.setattr(reconciliation, "_resolve", broken)
    with pytest.raises(RuntimeError):
        approval_approve(request_id=request.pk, checker=second)
    request.refresh_from_db()
    assert (request.status, request.checker) == ("pending", None)
    assert Exc.objects.get(pk=exception.pk).status == Exc.Status.OPEN
    assert not LedgerTransaction.objects.filter(kind="write_off").exists()


def test_a_write_off_whose_difference_changed_is_refused_at_approval(
    world: dict[str, Any], day_of_payments: dict[str, Any], operators: tuple[Any, Any]
) -> None:
    refs = day_of_payments["refs"]
    exception = channel_has_more(world, refs[2], 123)
    first, second = operators
    request = services.exception_write_off_request(exception_id=exception.pk, operator=first)
    Exc.objects.filter(pk=exception.pk).update(channel_amount=F("channel_amount") + 1)  # a corrected statement
    with pytest.raises(Conflict) as refused:
        approval_approve(request_id=request.pk, checker=second)
    assert refused.value.code == "write_off_amount_changed"
    request.refresh_from_db()
    assert request.status == "pending"
    assert Exc.objects.get(pk=exception.pk).status == Exc.Status.OPEN
    assert not LedgerTransaction.objects.filter(kind="write_off").exists()


def test_re_inquiry_resolves_when_the_channel_agrees(
    world: dict[str, Any], day_of_payments: dict[str, Any], operators: tuple[Any, Any]
) -> None:
    refs = day_of_payments["refs"]
    load(world, [row for row in our_rows(world) if row.reference not in refs[1:2]] +
         [Row("capture", "x-9", "sim-x-9", "", "CNY", 500, 0, "success", timezone.now())])  # fmt: skip
    missing = Exc.objects.get(reference=refs[1])
    services.exception_reinquire(exception_id=missing.pk, operator=operators[0])
    missing.refresh_from_db()
    assert (missing.status, missing.resolution) == (Exc.Status.RESOLVED, Exc.Resolution.REINQUIRY)
    # The channel still holds nothing under x-9: we agree it is not ours... and it says so: resolved too.
    extra = Exc.objects.get(reference="x-9")
    services.exception_reinquire(exception_id=extra.pk)
    extra.refresh_from_db()
    assert extra.status == Exc.Status.RESOLVED


def test_re_inquiry_leaves_it_open_when_the_channel_still_disagrees(
    world: dict[str, Any], day_of_payments: dict[str, Any]
) -> None:
    refs = day_of_payments["refs"]
    load(world, [row for row in our_rows(world) if row.reference != refs[1]])
    world["fake"].inquiry_down = True
    exception = Exc.objects.get(reference=refs[1])
    services.exception_reinquire(exception_id=exception.pk)
    exception.refresh_from_db()
    assert exception.status == Exc.Status.OPEN
    assert "no answer" in exception.note


def test_another_banks_operator_may_not_act(world: dict[str, Any], day_of_payments: dict[str, Any]) -> None:
    from tests.factories import MemberBankFactory

    load(world, our_rows(world)[1:])
    exception = Exc.objects.get()
    stranger = bank_operator(MemberBankFactory())
    with pytest.raises(PermissionDenied):
        services.exception_accept_ours(exception_id=exception.pk, operator=stranger)
    with pytest.raises(PermissionDenied):
        services.exception_accept_ours(exception_id=exception.pk, operator=None)
    exception.refresh_from_db()
    assert exception.status == Exc.Status.OPEN


def test_a_returned_payout_is_taken_over_from_the_statement(world: dict[str, Any]) -> None:
    from tests.factories import make_settlement_batch

    batch = make_settlement_batch(world["merchant"], status=SettlementBatch.Status.PAYING, net=5_000)
    payout = Payout.objects.create(
        batch=batch, merchant=world["merchant"], amount=5_000, currency="CNY", reference=f"{batch.public_id}-p1",
        channel=world["channel"], status=Payout.Status.SENT, sent_at=timezone.now(),
    )  # fmt: skip
    row = Row("payout", payout.reference, "po-1", "", "CNY", 5_000, 0, "returned", timezone.now())
    load(world, [row])
    exception = Exc.objects.get(reference=payout.reference)
    assert (exception.kind, exception.our_status, exception.channel_status) == (
        "status_mismatch",
        "success",
        "returned",
    )
    services.exception_accept_channel(exception_id=exception.pk, operator=bank_operator(world["channel"].acquirer))
    payout.refresh_from_db()
    batch.refresh_from_db()
    assert payout.status == Payout.Status.RETURNED
    assert batch.status == SettlementBatch.Status.RETURNED


# --- the late file and the job -------------------------------------------------------------------------------------


def test_a_late_file_is_asked_for_again_with_back_off_then_raised(
    world: dict[str, Any], settings: Any, day_of_payments: dict[str, Any]
) -> None:
    settings.RECON_LATE_MAX_ATTEMPTS = 3
    settings.RECON_LATE_RETRY_MINUTES = 10
    channel = world["channel"]
    day = channel_day(channel, timezone.now())
    assert services.reconcile_channel_day(channel=channel, day=day) is None
    fetch = StatementFetch.objects.get()
    assert (fetch.status, fetch.attempts) == (StatementFetch.Status.WAITING, 1)
    assert dt.timedelta(minutes=9) < fetch.next_attempt_at - timezone.now() <= dt.timedelta(minutes=10)
    services.reconcile_channel_day(channel=channel, day=day)
    fetch.refresh_from_db()
    assert fetch.attempts == 2
    assert dt.timedelta(minutes=19) < fetch.next_attempt_at - timezone.now() <= dt.timedelta(minutes=20)
    services.reconcile_channel_day(channel=channel, day=day)
    fetch.refresh_from_db()
    assert fetch.status == StatementFetch.Status.LATE
    late = Exc.objects.get(kind="statement_late")
    assert late.business_date == day
    assert late.status == Exc.Status.OPEN
    # The file comes after all: imported, and the late exception is cleared by it.
    world["fake"].statements[(channel.code, day)] = (
        statements.render("fixed_v1", channel.code, day, our_rows(world)),
        "fixed_v1",
    )
    result = services.reconcile_channel_day(channel=channel, day=day)
    assert result is not None
    assert result.summary["matched"]["count"] == len(our_rows(world))
    late.refresh_from_db()
    assert late.status == Exc.Status.SUPERSEDED


def test_the_job_fetches_each_due_day_once(world: dict[str, Any], day_of_payments: dict[str, Any]) -> None:
    channel = world["channel"]
    day = channel_day(channel, timezone.now())
    world["fake"].statements[(channel.code, day)] = (statements.render("csv_v2", channel.code, day, []), "csv_v2")
    after = dt.datetime.combine(day, channel.cutoff, tzinfo=SHANGHAI) + dt.timedelta(hours=1)
    report = services.reconcile_due(now=after)
    assert report.fetched == 1
    assert StatementImport.objects.get().format == "csv_v2"  # the connector's word for the layout
    # Nothing on the statement: every payment of the day is missing at the channel.
    assert Exc.objects.filter(kind="missing_at_channel").count() == 7
    again = services.reconcile_due(now=after)
    assert again.fetched == 0
    assert StatementImport.objects.count() == 1


def test_the_command_imports_a_file(world: dict[str, Any], day_of_payments: dict[str, Any], tmp_path: Any) -> None:
    from django.core.management import call_command

    channel = world["channel"]
    day = channel_day(channel, timezone.now())
    path = tmp_path / "statement.txt"
    path.write_text(statements.render("fixed_v1", channel.code, day, our_rows(world)[1:]))
    call_command("reconcile", "--channel", channel.code, "--date", day.isoformat(), "--file", str(path),
                 "--format", "fixed_v1")  # fmt: skip
    assert Exc.objects.get().kind == "missing_at_channel"


# --- settlement's hold --------------------------------------------------------------------------------------------


def test_a_contradicted_payment_waits_out_of_settlement_until_resolved(world: dict[str, Any]) -> None:
    from tests.payments.settling import at, make_world, pay

    settle_world = make_world()
    day = dt.date(2026, 11, 24)  # a Tuesday
    held = pay(settle_world, 10_000, day)
    other = pay(settle_world, 20_000, day)
    exception = Exc.objects.create(
        key="test:held", channel=settle_world["channel"], business_date=day, kind="missing_at_channel",
        txn_kind="capture", reference="r", payment=held, payment_created_at=held.created_at, currency="CNY",
        our_amount=10_000, holds_settlement=True,
    )  # fmt: skip
    services.settle("t1", day.isoformat())
    on_lines = set(SettlementLine.objects.filter(kind="payment").values_list("payment_id", flat=True))
    assert on_lines == {other.pk}
    # Resolved three working days later: it enters the next batch, although its business date is far behind.
    operator = bank_operator(settle_world["channel"].acquirer)
    services.exception_accept_ours(exception_id=exception.pk, operator=operator)
    later = dt.date(2026, 11, 27)
    pay(settle_world, 5_000, later)
    assert at(later) < timezone.now()
    services.settle("t1", later.isoformat())
    line = SettlementLine.objects.get(payment=held)
    assert line.batch.period == later.isoformat()
    assert SettlementBatch.objects.get(period=later.isoformat()).gross == 15_000


def test_a_held_refund_waits_too(world: dict[str, Any]) -> None:
    from tests.payments.settling import make_world, pay, refund

    settle_world = make_world()
    day = dt.date(2026, 11, 24)
    payment = pay(settle_world, 10_000, day)
    held_refund = refund(payment, 1_000, day)
    Exc.objects.create(
        key="test:held-refund", channel=settle_world["channel"], business_date=day, kind="status_mismatch",
        txn_kind="refund", reference="r", refund=held_refund, payment=payment, payment_created_at=payment.created_at,
        currency="CNY", holds_settlement=True,
    )  # fmt: skip
    services.settle("t1", day.isoformat())
    assert not SettlementLine.objects.filter(refund=held_refund).exists()
    assert SettlementLine.objects.filter(payment=payment, kind="payment").exists()


def test_write_off_amounts(world: dict[str, Any]) -> None:
    exc = Exc(kind="amount_mismatch", our_amount=100, channel_amount=93)
    assert reconciliation.write_off_amount(exc) == 7
    assert reconciliation.write_off_amount(Exc(kind="duplicate", channel_amount=40, copies=3)) == 80
    assert reconciliation.write_off_amount(Exc(kind="missing_with_us", channel_amount=55)) == 55
