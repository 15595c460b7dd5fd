"""Reconciliation exceptions are partitioned by month on their payment's created_at (payments/migrations/0054,
docs/scaling.md "Partitioning by month"): an exception lands in its payment's month and one without a payment in the
DEFAULT partition; the database's keys that hold the month still refuse a second exception of one problem; a
re-imported day finds the exceptions it raised before, with a payment or without, and a dispute row's exception whose
payment a corrected file names moves to its month; settlement's hold reads the payment's month; and the daily job
keeps a month with an open exception and archives a resolved one's.

Each test runs in a transaction that is rolled back, DDL included, so the partitions a test makes go with it.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone, translation
from psycopg2 import sql

from core.partitions import (
    OPEN_ROWS,
    PARTITIONED,
    WRITTEN_FOR_DAYS,
    has_open_rows,
    partitions,
    partitions_create,
    partitions_maintain,
)
from payments.models import PaymentIntent, ReconciliationException
from payments.services.settlement import _held_fragments, _tables
from payments.statements import Row
from payments.windows import REFUND_SPAN_DAYS, RELEASED_HOLD, RELEASED_HOLD_DAYS, RELEASED_HOLDS
from tests.factories import FACTORIES
from tests.partitioning import assert_monthly, at, explain, fetch, partition_of, payment_at, refused, table_keys
from tests.payments.test_reconciliation import load, our_rows, pay
from tests.payments.test_reconciliation_disputes import ref

pytestmark = pytest.mark.django_db
Exc = ReconciliationException
_keys = itertools.count()

TABLE = "payments_reconciliationexception"


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    with translation.override("en"):
        yield


@pytest.fixture
def world(recon_world: dict[str, Any]) -> dict[str, Any]:
    return recon_world


def _exception(payment: PaymentIntent | None = None, **fields: Any) -> Exc:
    return Exc.objects.create(
        key=fields.pop("key", f"partitions:{next(_keys)}"), channel=fields.pop("channel", None) or payment_channel(),
        business_date=dt.date(2026, 3, 2), kind=fields.pop("kind", "missing_at_channel"), txn_kind="capture",
        reference="x-1", currency="CNY", our_amount=100, payment=payment,
        payment_created_at=payment.created_at if payment else None, **fields,
    )  # fmt: skip


def payment_channel() -> Any:
    return FACTORIES["payments.channel"]()


def _single_partition(plan: str, month: str) -> None:
    assert f"{TABLE}_p{month}" in plan, plan
    others = [p.name for p in partitions(TABLE) if p.name != f"{TABLE}_p{month}"]
    assert others
    assert not [name for name in others if name in plan], plan


def test_the_migration_made_a_partitioned_table_whose_keys_hold_the_payments_month() -> None:
    assert_monthly(TABLE, "payment_created_at")
    # Detached after the settlement lines and before the refunds and payments it refers to.
    order = list(PARTITIONED)
    assert order.index("payments_settlementline") < order.index(TABLE) < order.index("payments_refund")
    assert order.index("payments_refund") < order.index("payments_paymentintent")
    # No primary key (an exception without a payment has no month): every key holds the month, NULLs not distinct.
    assert table_keys(TABLE) == {
        "UNIQUE NULLS NOT DISTINCT (id, payment_created_at)",
        "UNIQUE NULLS NOT DISTINCT (public_id, payment_created_at)",
        "UNIQUE NULLS NOT DISTINCT (key, payment_created_at)",
    }
    indexes = dict(
        fetch(
            "SELECT indexname, regexp_replace(indexdef, '^.* USING btree ', '') FROM pg_indexes"
            " WHERE tablename = %s AND indexname LIKE 'recon_exception_%%'",
            (TABLE,),
        )
    )
    assert indexes == {
        "recon_exception_day": "(channel_id, business_date, status)",
        "recon_exception_holds_payment": "(payment_id) WHERE (holds_settlement AND (payment_id IS NOT NULL))",
        "recon_exception_holds_refund": "(refund_id) WHERE (holds_settlement AND (refund_id IS NOT NULL))",
        "recon_exception_released": "(resolved_at) WHERE (holds_settlement AND ((status)::text = ANY "
        "((ARRAY['resolved'::character varying, 'superseded'::character varying])::text[])))",
    }
    keys = dict(
        fetch(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = %s::regclass AND contype = 'f' AND conparentid = 0",
            (TABLE,),
        )
    )
    assert keys["payments_reconciliationexception_payment_fk"].startswith(
        "FOREIGN KEY (payment_id, payment_created_at) REFERENCES payments_paymentintent(id, created_at)"
    )
    assert keys["payments_reconciliationexception_refund_fk"].startswith(
        "FOREIGN KEY (refund_id, payment_created_at) REFERENCES payments_refund(id, intent_created_at)"
    )
    assert len(keys) == 7  # channel, statement, payout and user as before, the write-off's posting too
    # The model keeps `id`; an open exception keeps its month, which is written while its refunds are.
    assert Exc._meta.pk is not None
    assert Exc._meta.pk.name == "id"
    assert OPEN_ROWS[TABLE] == {"an exception is still open": "status = 'open'", RELEASED_HOLD: RELEASED_HOLDS[TABLE]}
    assert list(Exc.OPEN_STATUSES) == ["open"]
    assert WRITTEN_FOR_DAYS[TABLE] == REFUND_SPAN_DAYS + settings.RECON_LOOKBACK_DAYS + 1


def test_an_exception_lands_in_its_payments_month_and_without_a_payment_in_the_default() -> None:
    partitions_create(TABLE, dt.date(2020, 1, 1), 3)
    payment = payment_at(at(2020, 2, 29))
    assert partition_of(TABLE, _exception(payment).pk) == f"{TABLE}_p202002"
    assert partition_of(TABLE, _exception(kind="missing_with_us").pk) == f"{TABLE}_default"


def test_a_second_exception_of_one_problem_is_still_refused() -> None:
    partitions_create(TABLE, dt.date(2021, 1, 1), 3)
    payment = payment_at(at(2021, 2))
    first = _exception(payment, key="one:problem")
    refused(lambda: _exception(payment, key="one:problem"), r"Key \(key, payment_created_at\)")
    # Without a payment, the month is empty: NULLs are not distinct in the key.
    _exception(key="no:payment", kind="missing_with_us")
    refused(lambda: _exception(key="no:payment", kind="missing_with_us"), r"Key \(key, payment_created_at\)")
    refused(lambda: _exception(payment, public_id=first.public_id), r"Key \(public_id, payment_created_at\)")
    assert Exc.objects.filter(key__in=["one:problem", "no:payment"]).count() == 2


def _partition_month(payment: PaymentIntent) -> str:
    return payment.created_at.astimezone(dt.timezone(dt.timedelta(hours=8))).strftime("%Y%m")


def test_a_re_imported_day_finds_the_exceptions_it_raised_with_a_payment_or_without(world: dict[str, Any]) -> None:
    payments = [pay(world, amount) for amount in (10_000, 20_000, 30_000)]
    refs = [p.attempts.get().reference for p in payments]
    rows = {row.reference: row for row in our_rows(world)}
    unknown = Row("capture", "theirs-1", "txn_unknown", "", "CNY", 4_000, 0, "success", timezone.now())
    statement = [
        # refs[0]: missing at the channel (our payment)
        rows[refs[1]]._replace(amount=rows[refs[1]].amount + 5),  # amount mismatch (our payment)
        rows[refs[2]],
        rows[refs[2]],  # duplicate: its first copy paired with our payment
        unknown,  # missing with us: no payment
    ]
    load(world, statement)
    raised = {(e.kind, e.reference): e for e in Exc.objects.all()}
    assert set(raised) == {
        ("missing_at_channel", refs[0]),
        ("amount_mismatch", refs[1]),
        ("duplicate", refs[2]),
        ("missing_with_us", "theirs-1"),
    }
    month = _partition_month(payments[0])
    for (kind, reference), exception in raised.items():
        expected = f"{TABLE}_default" if kind == "missing_with_us" else f"{TABLE}_p{month}"
        assert partition_of(TABLE, exception.pk) == expected, (kind, reference)

    # The day's corrected file (another row added): every problem it still shows is the exception raised before.
    corrected = load(world, [*statement, unknown._replace(reference="theirs-2", channel_txn_id="txn_other")])
    assert corrected.created
    again = {(e.kind, e.reference): e for e in Exc.objects.all()}
    assert set(again) == {*raised, ("missing_with_us", "theirs-2")}
    for name, exception in raised.items():
        found = again[name]
        assert (found.pk, found.payment_id, found.payment_created_at) == (
            exception.pk, exception.payment_id, exception.payment_created_at,
        ), name  # fmt: skip
        assert found.statement_id == corrected.statement.pk
        assert found.status == "open"
    assert Exc.objects.count() == 5


def test_a_duplicate_keeps_the_month_of_the_exception_raised_under_its_key(world: dict[str, Any]) -> None:
    """A duplicate's payment is its first copy's pair's: a re-import that pairs it otherwise still finds it."""
    payment = pay(world, 10_000)
    row = next(r for r in our_rows(world) if r.reference == ref(payment))
    load(world, [row, row])
    (duplicate,) = Exc.objects.filter(kind="duplicate")
    assert duplicate.payment_id == payment.pk
    # As if the first file had found no payment of ours for it: the same row, its month empty.
    Exc.objects.filter(pk=duplicate.pk).update(payment_id=None, payment_created_at=None)
    assert partition_of(TABLE, duplicate.pk) == f"{TABLE}_default"
    load(world, [row, row, row])
    (again,) = Exc.objects.filter(kind="duplicate")
    assert (again.pk, again.payment_id, again.copies) == (duplicate.pk, None, 3)


def test_a_dispute_exception_whose_payment_a_corrected_file_names_moves_to_its_month(world: dict[str, Any]) -> None:
    payment = pay(world, 10_000)
    row = Row("chargeback", "", "dsp_unnamed", "", "CNY", 3_000, 0, "opened", timezone.now())
    load(world, [*our_rows(world), row])
    missing = Exc.objects.get(kind="dispute_missing")
    assert (missing.payment_id, partition_of(TABLE, missing.pk)) == (None, f"{TABLE}_default")

    # The corrected file names our payment's reference on the row: the same exception, now in the payment's month.
    load(world, [*our_rows(world), row._replace(reference=ref(payment))])
    moved = Exc.objects.get(kind="dispute_missing")
    assert (moved.pk, moved.payment_id, moved.payment_created_at) == (missing.pk, payment.pk, payment.created_at)
    assert partition_of(TABLE, moved.pk) == f"{TABLE}_p{_partition_month(payment)}"
    assert moved.status == "open"


def test_settlements_hold_reads_the_payments_month_only() -> None:
    partitions_create(TABLE, dt.date(2023, 1, 1), 3)
    payment = payment_at(at(2023, 2))
    fragments = _held_fragments(_tables(), sql.SQL("payments_settlementline"))
    with connection.cursor() as cursor:
        held = fragments["payment_not_held"].as_string(cursor.connection)
    statement = f"SELECT 1 FROM payments_paymentintent p WHERE p.id = %s AND p.created_at = %s AND {held}"
    plan = explain(statement, (payment.pk, payment.created_at))
    _single_partition(plan, "202302")


def test_the_job_keeps_a_month_with_an_open_exception_and_archives_a_resolved_ones() -> None:
    with connection.cursor() as cursor:  # as if committed before the job: no key checks left pending
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    partitions_create(TABLE, dt.date(2041, 1, 1), 4)
    with mock.patch("django.utils.timezone.now", return_value=at(2041, 1)):
        january = FACTORIES["payments.paymentintent"]()
    with mock.patch("django.utils.timezone.now", return_value=at(2041, 2)):
        february = FACTORIES["payments.paymentintent"]()
    with mock.patch("django.utils.timezone.now", return_value=at(2041, 4)):
        april = FACTORIES["payments.paymentintent"]()
    still_open = _exception(january)
    resolved = _exception(february, status="resolved", resolved_at=at(2041, 3))
    recent = _exception(april, status="resolved", resolved_at=at(2041, 5))
    without = _exception(kind="missing_with_us")
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")

    # In December, April's payments' refunds (and their statements) may still come; January's and February's may
    # not, but January's month holds an open exception.
    result = partitions_maintain(today=dt.date(2041, 12, 10), ahead=0, archive_after=1)
    written_until = dt.date(2041, 5, 1) + dt.timedelta(days=WRITTEN_FOR_DAYS[TABLE])
    assert f"{TABLE}_p204101: some of its rows are still open: an exception is still open" in result.kept
    assert f"{TABLE}_p204104: rows of it may be written until {written_until.isoformat()}" in result.kept
    assert f"{TABLE}_archive_204102" in result.archived
    assert not Exc.objects.filter(pk=resolved.pk).exists()
    assert fetch(f"SELECT id FROM {TABLE}_archive_204102") == [(resolved.pk,)]
    assert partition_of(TABLE, still_open.pk) == f"{TABLE}_p204101"
    assert partition_of(TABLE, recent.pk) == f"{TABLE}_p204104"
    assert partition_of(TABLE, without.pk) == f"{TABLE}_default"

    # Once resolved, its month goes too.
    Exc.objects.filter(pk=still_open.pk).update(status="resolved", resolved_at=at(2041, 12))
    again = partitions_maintain(today=dt.date(2041, 12, 10), ahead=0, archive_after=1)
    assert f"{TABLE}_archive_204101" in again.archived


def test_a_month_whose_held_payment_was_released_is_kept_while_settlement_may_take_it() -> None:
    """A payment held from settlement by an exception is taken by the merchant's next batch once the exception is
    resolved, however old the payment (settlement's `released_payments`, RELEASED_HOLD_DAYS back): its month must
    still be there then, or the merchant would never be paid for it."""
    fetch("SET CONSTRAINTS ALL IMMEDIATE")
    partitions_create(TABLE, dt.date(2041, 1, 1), 1)
    held = payment_at(at(2041, 1))
    exception = _exception(held, holds_settlement=True)
    fetch("SET CONSTRAINTS ALL IMMEDIATE")
    december = dt.date(2041, 12, 10)

    # Resolved ten days before the job's day: its month stays, and the payment's with it.
    Exc.objects.filter(pk=exception.pk).update(status="resolved", resolved_at=at(2041, 11, 30))
    kept = partitions_maintain(today=december, ahead=0, archive_after=1)
    assert f"{TABLE}_p204101: some of its rows are still open: {RELEASED_HOLD}" in kept.kept
    assert "payments_paymentintent_p204101: rows of payments_reconciliationexception refer to it" in kept.kept
    assert PaymentIntent.objects.filter(pk=held.pk).exists()
    # An exception that held nothing keeps nothing once resolved.
    Exc.objects.filter(pk=exception.pk).update(holds_settlement=False)
    assert not has_open_rows(TABLE, dt.date(2041, 1, 1), today=december)

    # Resolved longer ago than settlement looks back, the month goes, and then the payment's.
    lifted_long_ago = at(2041, 12, 10) - dt.timedelta(days=RELEASED_HOLD_DAYS + 1)
    Exc.objects.filter(pk=exception.pk).update(holds_settlement=True, resolved_at=lifted_long_ago)
    done = partitions_maintain(today=december, ahead=0, archive_after=1)
    assert done.archived.index(f"{TABLE}_archive_204101") < done.archived.index("payments_paymentintent_archive_204101")
