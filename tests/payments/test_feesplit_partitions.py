"""Fee splits are partitioned by month on their payment's created_at (payments/migrations/0049, docs/scaling.md
"Partitioning by month"): a payment's splits land in its month's partition whenever they are written, the database's
keys that hold the month still refuse a second split of one party for one capture or one refund, the reads that name
the payment's month read one partition, and the daily job archives a month of splits before the payments'.

Each test runs in a transaction that is rolled back, DDL included, so the partitions a test makes go with it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from alliance.metrics import FEE_SHARE_SQL, MonthRange
from core.partitions import (
    PARTITIONED,
    archive_tables,
    partitions,
    partitions_create,
    partitions_maintain,
)
from payments import fees, services
from payments.models import FeeSplit, PaymentIntent
from tests.partitioning import assert_monthly, explain, fetch, partition_of, table_keys
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
    # Detached before the refunds and payments it refers to.
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


def _one_partition(plan: str, month: str) -> None:
    assert f"{TABLE}_p{month}" in plan, plan
    others = [p.name for p in partitions(TABLE) if p.name != f"{TABLE}_p{month}"]
    assert others
    assert not [name for name in others if name in plan], plan


def test_a_payments_splits_are_read_in_its_months_partition() -> None:
    _months(dt.date(2024, 1, 1), 6)
    world = make_world()
    paid = pay(world, 10_000, dt.date(2024, 3, 5))
    reads = FeeSplit.objects.of(paid)
    assert reads.count() == 4
    _one_partition(explain(*reads.query.sql_with_params()), "202403")
    # The fee code's reads of a payment's splits (a refund's hand-back, the net per party) name the month.
    with CaptureQueriesContext(connection) as queries:
        refund(paid, 1_000, dt.date(2024, 3, 6))
        assert sum(fees.net_by_party(paid).values()) == paid.fee - fees.fee_for(world["schedule"], 1_000)
    statements = [q["sql"] for q in queries.captured_queries if q["sql"].startswith(f'SELECT "{TABLE}"')]
    assert len(statements) == 2
    for statement in statements:
        _one_partition(explain(statement), "202403")
    # Without the month, every month's partition is read.
    assert f"{TABLE}_p202401" in explain(*FeeSplit.objects.filter(payment=paid).query.sql_with_params())


def _executed(statement: str, table: str) -> set[str]:
    """The partitions of `table` that running `statement` read (EXPLAIN ANALYZE: the ones pruned at run time, per
    outer row, show no loops)."""
    ((plan,),) = fetch("EXPLAIN (ANALYZE, FORMAT JSON) " + statement)
    found: set[str] = set()

    def walk(node: dict[str, Any]) -> Iterator[None]:
        name = str(node.get("Relation Name", ""))
        if name.startswith(f"{table}_") and node.get("Actual Loops", 0) > 0:
            found.add(name)
        for child in node.get("Plans", []):
            yield from walk(child)
        yield None

    list(walk(plan[0]["Plan"]))
    return found


class _Undone(Exception):
    pass


def test_settlement_reads_a_payments_and_a_refunds_splits_in_their_month() -> None:
    _months(dt.date(2024, 1, 1), 8)
    world = make_world()
    wed = dt.date(2024, 6, 12)
    paid = pay(world, 10_000, wed)
    older = pay(world, 20_000, dt.date(2024, 4, 20))
    refund(older, 1_000, wed)  # an older payment's refund, settled the same day
    # Settled and undone, so that the chunk's statements find the payment and the refund again when run below.
    with CaptureQueriesContext(connection) as queries:
        try:
            with transaction.atomic():
                services.settle("t1", wed.isoformat())
                raise _Undone
        except _Undone:
            pass
    reads = [
        q["sql"].split("INSERT INTO settle_items", 1)[1]
        for q in queries.captured_queries
        if "INSERT INTO settle_items" in q["sql"] and f'"{TABLE}"' in q["sql"] and "business_date BETWEEN" in q["sql"]
    ]
    assert len(reads) == 2  # the chunk's payments and its refunds
    payments, refunds = (_executed(statement, TABLE) for statement in reads)
    assert payments == {f"{TABLE}_p202406"}
    assert refunds == {f"{TABLE}_p202404"}
    assert paid.fee > 0


def test_the_revenue_shares_fee_share_reads_the_months_its_windows_allow() -> None:
    _months(dt.date(2023, 6, 1), 18)
    params = MonthRange(dt.date(2024, 6, 1)).params()
    with connection.cursor() as cursor:
        statement = cursor.mogrify(FEE_SHARE_SQL, params).decode()
    plan = explain(statement)
    scanned = {p.name.removeprefix(f"{TABLE}_p") for p in partitions(TABLE) if p.name in plan}
    # June's captures' splits are of payments made from April on, its refunds' of payments made from late September
    # before (the capture and refund windows, with their slack); nothing after June, nor before September.
    assert scanned == {f"2023{m:02d}" for m in range(9, 13)} | {f"2024{m:02d}" for m in range(1, 7)}


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
    # The refunds' and payments' months went after them; the archive keeps no key to them.
    assert result.archived.index(f"{TABLE}_archive_203001") < result.archived.index("payments_refund_archive_203001")
    assert result.archived.index("payments_refund_archive_203001") < result.archived.index(
        "payments_paymentintent_archive_203001"
    )
    assert not PaymentIntent.objects.filter(pk=paid.pk).exists()
    assert fetch(
        "SELECT count(*) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'"
        " AND confrelid IN ('payments_paymentintent'::regclass, 'payments_refund'::regclass)",
        (f"{TABLE}_archive_203001",),
    ) == [(0,)]
