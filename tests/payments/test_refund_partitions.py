"""Refunds are partitioned by month on their payment's created_at (payments/migrations/0043, docs/scaling.md
"Partitioning by month"): a refund lands in its payment's month whenever it is made, the database's keys that hold the
month still refuse a second refund with one reference, the rows that name a refund refer to it by (refund, payment's
time) and are refused with another time, the services read and update a payment's refunds in one partition, and the
daily job keeps the refunds' months too, moving rows that fee splits refer to.

Each test runs in a transaction that is rolled back, DDL included, so the partitions a test makes go with it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from core.calendar import SHANGHAI
from core.models import ArchivedMonth
from core.partitions import partitions, partitions_create, partitions_maintain
from payments.models import (
    FeeSplit,
    PaymentIntent,
    ReconciliationException,
    Refund,
    SettlementBatch,
    SettlementLine,
)
from payments.services.refunds import refund_correction
from tests.factories import FACTORIES
from tests.partitioning import (
    assert_monthly,
    at,
    explain,
    fetch,
    immediately,
    partition_of,
    referring_keys,
    refused,
    table_keys,
)

pytestmark = pytest.mark.django_db

TABLE = "payments_refund"
REFERRERS = ("payments_feesplit", "payments_settlementline", "payments_reconciliationexception")


def _payment_at(when: dt.datetime) -> PaymentIntent:
    """A captured payment created as if at `when`."""
    with mock.patch("django.utils.timezone.now", return_value=when):
        return FACTORIES["payments.paymentintent"]()


def _refunded(payment: PaymentIntent, amount: int = 100, *, when: dt.datetime | None = None) -> Refund:
    """A refund of `payment` through the service (a correction: recorded and settled without a channel call)."""
    with mock.patch("django.utils.timezone.now", return_value=when or payment.created_at + dt.timedelta(days=2)):
        return refund_correction(payment, amount, reason="test")


def _months(year: int) -> None:
    partitions_create(TABLE, dt.date(year, 1, 1), 3)


def test_the_migration_made_a_partitioned_table_whose_keys_hold_the_payments_time() -> None:
    assert_monthly(TABLE, "intent_created_at")
    assert table_keys(TABLE) == {
        "PRIMARY KEY (id, intent_created_at)",
        "UNIQUE (public_id, intent_created_at)",
        "UNIQUE (reference, intent_created_at)",
    }
    # Each referrer's key to the refund is composite, and no other key refers to the refunds.
    referring = referring_keys(TABLE)
    assert referring == [
        (
            table,
            f"FOREIGN KEY (refund_id, payment_created_at) REFERENCES {TABLE}(id, intent_created_at)"
            " DEFERRABLE INITIALLY DEFERRED",
        )
        for table in sorted(REFERRERS)
    ]
    nullable = dict(
        fetch(
            "SELECT table_name, is_nullable FROM information_schema.columns"
            " WHERE column_name = 'payment_created_at' AND table_name = ANY(%s)",
            (list(REFERRERS),),
        )
    )
    assert nullable == {"payments_feesplit": "NO", "payments_settlementline": "YES",
                        "payments_reconciliationexception": "YES"}  # fmt: skip
    # The model keeps `id` and states the rules the keys keep.
    assert Refund._meta.pk is not None
    assert Refund._meta.pk.name == "id"
    assert Refund._meta.get_field("reference").unique  # type: ignore[union-attr]
    assert Refund._meta.get_field("public_id").unique  # type: ignore[union-attr]


def test_a_refund_lands_in_its_payments_month_whenever_it_is_made() -> None:
    _months(2020)
    payment = _payment_at(at(2020, 2, 29))
    refund = _refunded(payment, when=at(2020, 3, 2))  # refunded in the next month
    assert refund.intent_created_at == payment.created_at
    assert refund.created_at.astimezone(SHANGHAI).month == 3
    assert partition_of(TABLE, refund.pk) == f"{TABLE}_p202002"
    # Its fee splits carry the payment's time, which their key to the refund holds.
    assert set(FeeSplit.objects.filter(refund=refund).values_list("payment_created_at", flat=True)) <= {
        payment.created_at
    }
    # Asia/Shanghai months: 1 March 00:30 there is still February in UTC, and is March's partition.
    late = _payment_at(dt.datetime(2020, 3, 1, 0, 30, tzinfo=SHANGHAI))
    assert partition_of(TABLE, _refunded(late).pk) == f"{TABLE}_p202003"
    # Without a partition for its month the refund is kept in the DEFAULT partition.
    assert partition_of(TABLE, _refunded(_payment_at(at(2020, 7))).pk) == f"{TABLE}_default"


def test_a_second_refund_with_one_reference_is_refused() -> None:
    _months(2021)
    payment = _payment_at(at(2021, 2))
    first = _refunded(payment)
    assert first.reference == f"{payment.public_id}-r1"
    # PostgreSQL names the month's index that refused it (the partition's), with the key.
    with pytest.raises(IntegrityError, match=r"Key \(reference, intent_created_at\)"), transaction.atomic():
        Refund.objects.create(
            intent=payment, intent_created_at=payment.created_at, merchant_id=payment.merchant_id, amount=1,
            reference=first.reference,
        )  # fmt: skip
    assert Refund.objects.of(payment).count() == 1
    second = _refunded(payment)  # the service takes the payment's next reference
    assert second.reference == f"{payment.public_id}-r2"


def test_the_rows_that_name_a_refund_are_refused_with_another_payment_time() -> None:
    _months(2022)
    payment = _payment_at(at(2022, 2))
    refund = _refunded(payment)
    other = _payment_at(at(2022, 3))  # another payment, another month
    wrong = other.created_at
    batch = SettlementBatch.objects.create(
        merchant=payment.merchant, currency="CNY", cycle="t1", period="x", cutoff_at=payment.created_at,
        settle_on=dt.date(2022, 2, 20),
    )  # fmt: skip
    schedule = FACTORIES["payments.feeschedule"]()
    rows: dict[str, Callable[[dt.datetime | None], Any]] = {
        "payments_feesplit": lambda when: FeeSplit.objects.create(
            payment=payment, payment_created_at=when, refund=refund, schedule=schedule, event="refund",
            party="issuer", amount=-1,
        ),
        "payments_settlementline": lambda when: SettlementLine.objects.create(
            batch=batch, kind="refund", payment=payment, payment_created_at=when, refund=refund, amount=-100,
        ),
        "payments_reconciliationexception": lambda when: ReconciliationException.objects.create(
            key=f"test:{refund.pk}", channel=payment.channel, business_date=dt.date(2022, 2, 16),
            kind="missing_at_channel", txn_kind="refund", payment=payment, payment_created_at=when, refund=refund,
        ),
    }  # fmt: skip
    for table, make in rows.items():
        refused(lambda make=make: make(wrong), f'"{table}_refund_fk"')
        # With the refund's payment's time the row is taken.
        assert immediately(lambda make=make: make(payment.created_at)).pk
    # A line or an exception naming a refund names its payment and the payment's time: no NULL skips the key.
    refused(
        lambda: SettlementLine.objects.create(batch=batch, kind="refund", refund=refund, amount=-100),
        "settlementline_payment_month",
    )
    no_payment = {"key": "test:no-payment", "channel": payment.channel, "business_date": dt.date(2022, 2, 16),
                  "kind": "missing_at_channel", "txn_kind": "refund", "refund": refund}  # fmt: skip
    refused(lambda: ReconciliationException.objects.create(**no_payment), "recon_exception_payment_month")


def _single_partition(plan: str, month: str) -> None:
    assert f"{TABLE}_p{month}" in plan, plan
    others = [p.name for p in partitions(TABLE) if p.name != f"{TABLE}_p{month}"]
    assert others
    assert not [name for name in others if name in plan], plan


def test_the_services_read_and_update_a_payments_refunds_in_its_months_partition() -> None:
    _months(2023)
    payment = _payment_at(at(2023, 2))
    _refunded(payment)
    with CaptureQueriesContext(connection) as queries:
        refund = _refunded(payment)  # the next reference (a count), the lock, the outcome, the read back
    touching = [
        query["sql"]
        for query in queries.captured_queries
        if query["sql"].startswith(("SELECT", "UPDATE")) and f'"{TABLE}"' in query["sql"].split(" WHERE ")[0]
    ]
    assert len(touching) >= 4, touching
    for statement in touching:
        _single_partition(explain(statement), "202302")
    assert refund.status == Refund.Status.SUCCEEDED
    assert [r.reference for r in Refund.objects.of(payment).order_by("id")] == [
        f"{payment.public_id}-r1",
        f"{payment.public_id}-r2",
    ]
    # The cardholder's receipt of the payment and the payment's admin page read its refunds the same way.
    _single_partition(Refund.objects.of(payment).explain(), "202302")


def test_the_job_creates_the_refunds_months_and_moves_the_defaults_rows_that_others_refer_to() -> None:
    with connection.cursor() as cursor:  # as if committed before the job: no key checks left pending
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    partitions_create(TABLE, dt.date(2040, 1, 1), 1)
    payment = _payment_at(at(2040, 3))  # no partition for March yet: the DEFAULT partition holds its refund
    refund = _refunded(payment)
    fee = FeeSplit.objects.create(
        payment=payment, payment_created_at=payment.created_at, refund=refund,
        schedule=FACTORIES["payments.feeschedule"](), event="refund", party="alliance", amount=-1,
    )  # fmt: skip
    assert partition_of(TABLE, refund.pk) == f"{TABLE}_default"

    result = partitions_maintain(today=dt.date(2040, 5, 10), ahead=1, archive_after=None)

    made = [name for name in result.created if name.startswith(f"{TABLE}_")]
    assert made == [f"{TABLE}_p204003", f"{TABLE}_p204005", f"{TABLE}_p204006"]
    assert partition_of(TABLE, refund.pk) == f"{TABLE}_p204003"
    assert Refund.objects.of(payment).get() == refund
    assert FeeSplit.objects.get(pk=fee.pk).refund_id == refund.pk
    # The fee splits' key was added back after the move.
    assert fetch(
        "SELECT count(*) FROM pg_constraint WHERE conname = 'payments_feesplit_refund_fk' AND conparentid = 0"
    ) == [(1,)]


def test_the_job_keeps_a_month_of_refunds_that_may_still_be_refunded_or_that_rows_refer_to() -> None:
    with connection.cursor() as cursor:  # as if committed before the job: no key checks left pending
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    partitions_create(TABLE, dt.date(2041, 1, 1), 4)
    with mock.patch("django.utils.timezone.now", return_value=at(2041, 1)):
        old = FACTORIES["payments.refund"]()
    with mock.patch("django.utils.timezone.now", return_value=at(2041, 4)):
        recent = FACTORIES["payments.refund"]()
    exception = ReconciliationException.objects.create(
        key="partitions:refund", channel=FACTORIES["payments.channel"](), business_date=dt.date(2041, 1, 20),
        kind="missing_with_us", txn_kind="refund", reference=old.reference, currency="CNY", channel_amount=100,
        payment_id=old.intent_id, payment_created_at=old.intent_created_at, refund=old,
    )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")

    # In December, April's payments may still be refunded (for 250 days after April: capture and refund windows);
    # January's may not, but an exception refers to one of its refunds.
    result = partitions_maintain(today=dt.date(2041, 12, 10), ahead=0, archive_after=1)
    assert f"{TABLE}_p204104: rows of it may be written until 2042-01-06" in result.kept
    assert f"{TABLE}_p204101: rows of payments_reconciliationexception refer to it" in result.kept
    assert partition_of(TABLE, old.pk) == f"{TABLE}_p204101"
    assert partition_of(TABLE, recent.pk) == f"{TABLE}_p204104"

    # Once nothing refers to it, the month is archived, and recorded.
    exception.refund = None
    exception.save(update_fields=["refund"])
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    again = partitions_maintain(today=dt.date(2041, 12, 10), ahead=0, archive_after=1)
    assert f"{TABLE}_archive_204101" in again.archived
    assert ArchivedMonth.objects.filter(table=TABLE, month=dt.date(2041, 1, 1)).exists()
    assert not Refund.objects.filter(pk=old.pk).exists()
    assert fetch(f"SELECT id FROM {TABLE}_archive_204101") == [(old.pk,)]
    assert partition_of(TABLE, recent.pk) == f"{TABLE}_p204104"
