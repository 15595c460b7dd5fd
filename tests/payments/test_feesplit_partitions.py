"""Fee splits are partitioned by month on their payment's created_at (payments/migrations/0049, docs/scaling.md
"Partitioning by month"): a payment's splits land in its month's partition whenever they are written, the database's
keys that hold the month still refuse a second split of one party for one capture or one refund, and the daily job
archives a month of splits before the payments'.

Each test runs in a transaction that is rolled back, DDL included, so the partitions a test makes go with it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction

from core.partitions import (
    NEVER_ARCHIVED,
    PARTITIONED,
    archive_tables,
    partitions_create,
    partitions_maintain,
)
from payments.models import FeeSplit, PaymentIntent
from tests.partitioning import assert_monthly, fetch, partition_of, table_keys
from tests.payments.settling import make_world, pay, refund

pytestmark = pytest.mark.django_db

TABLE = "payments_feesplit"


def _months(first: dt.date, months: int) -> None:
    for table in (TABLE, "payments_paymentintent", "payments_refund", "payments_paymentattempt"):
        partitions_create(table, first, months)


def _unique_indexes() -> dict[str, str]:
    return {
        str(name): str(definition).split(" USING ", 1)[1]
        for name, definition in fetch(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE i.indrelid = %s::regclass AND i.indisunique AND NOT i.indisprimary",
            (TABLE,),
        )
    }


def test_the_migration_made_a_partitioned_table_whose_keys_hold_the_payments_time() -> None:
    assert_monthly(TABLE, "payment_created_at")
    assert table_keys(TABLE) == {"PRIMARY KEY (id, payment_created_at)"}
    assert _unique_indexes() == {
        "feesplit_one_capture_per_party": (
            "btree (payment_id, party, payment_created_at) WHERE ((event)::text = 'capture'::text)"
        ),
        "feesplit_one_refund_per_party": "btree (refund_id, party, payment_created_at) WHERE (refund_id IS NOT NULL)",
    }
    keys = dict(
        fetch(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = %s::regclass AND contype = 'f' AND conparentid = 0",
            (TABLE,),
        )
    )
    assert keys["payments_feesplit_payment_fk"] == (
        "FOREIGN KEY (payment_id, payment_created_at) REFERENCES payments_paymentintent(id, created_at)"
        " ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED"
    )
    assert keys["payments_feesplit_refund_fk"] == (
        "FOREIGN KEY (refund_id, payment_created_at) REFERENCES payments_refund(id, intent_created_at)"
        " DEFERRABLE INITIALLY DEFERRED"
    )
    # Archivable, and detached before the refunds and payments it refers to.
    assert TABLE not in NEVER_ARCHIVED
    order = list(PARTITIONED)
    assert order.index(TABLE) < order.index("payments_refund") < order.index("payments_paymentintent")
    # The model keeps `id` and states the rules the keys keep.
    assert FeeSplit._meta.pk is not None
    assert FeeSplit._meta.pk.name == "id"
    assert {c.name for c in FeeSplit._meta.constraints} == set(_unique_indexes())


def test_a_payments_splits_land_in_its_month_whenever_they_are_written() -> None:
    _months(dt.date(2024, 1, 1), 6)
    world = make_world()
    paid = pay(world, 10_000, dt.date(2024, 2, 28))
    returned = refund(paid, 1_000, dt.date(2024, 4, 2))  # refunded two months later
    splits = FeeSplit.objects.filter(payment=paid)
    assert splits.filter(refund=returned).count() == 4
    assert {partition_of(TABLE, pk) for pk in splits.values_list("pk", flat=True)} == {f"{TABLE}_p202402"}
    # Without a partition for its month a split is kept in the DEFAULT partition.
    late = pay(world, 10_000, dt.date(2024, 9, 2))
    assert {partition_of(TABLE, s.pk) for s in FeeSplit.objects.of(late)} == {f"{TABLE}_default"}


def _split(payment: PaymentIntent, schedule: Any, **kwargs: Any) -> FeeSplit:
    return FeeSplit.objects.create(
        payment=payment, payment_created_at=payment.created_at, schedule=schedule, bank=None, amount=1, **kwargs
    )


def test_a_second_split_of_one_party_is_still_refused() -> None:
    _months(dt.date(2024, 1, 1), 6)
    world = make_world()
    paid = pay(world, 10_000, dt.date(2024, 3, 5))
    schedule = world["schedule"]
    # PostgreSQL names the month's index that refused it (the partition's), with the key.
    with pytest.raises(IntegrityError, match=r"Key \(payment_id, party, payment_created_at\)"), transaction.atomic():
        _split(paid, schedule, event="capture", party="alliance")
    returned = refund(paid, 1_000, dt.date(2024, 3, 6))
    with pytest.raises(IntegrityError, match=r"Key \(refund_id, party, payment_created_at\)"), transaction.atomic():
        _split(paid, schedule, event="refund", party="issuer", refund=returned)
    # What the keys do not cover is allowed as before: a reversal's hand-backs, one per party, besides the capture's.
    assert _split(paid, schedule, event="reversal", party="alliance").pk


def test_the_job_archives_a_month_of_splits_before_the_payments() -> None:
    _months(dt.date(2030, 1, 1), 2)
    world = make_world()
    paid = pay(world, 10_000, dt.date(2030, 1, 10))
    refund(paid, 1_000, dt.date(2030, 1, 11))
    with connection.cursor() as cursor:  # the keys checked now, as the job runs after the payments' commit
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    # Well past the refund window, so that no rule keeps the month for a refund yet to come.
    result = partitions_maintain(today=dt.date(2031, 6, 10), ahead=0, archive_after=3)
    assert f"{TABLE}_archive_203001" in result.archived
    assert f"{TABLE}_archive_203001" in archive_tables(TABLE)
    assert not FeeSplit.objects.filter(payment=paid).exists()
    assert fetch(f"SELECT count(*) FROM {TABLE}_archive_203001") == [(8,)]
    # The payments and refunds stay (never archived); the archive keeps no key to them.
    assert PaymentIntent.objects.filter(pk=paid.pk).exists()
    assert fetch(
        "SELECT count(*) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'"
        " AND confrelid IN ('payments_paymentintent'::regclass, 'payments_refund'::regclass)",
        (f"{TABLE}_archive_203001",),
    ) == [(0,)]
