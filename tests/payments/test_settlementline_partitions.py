"""Settlement lines are partitioned by month on their payment's created_at (payments/migrations/0051, docs/scaling.md
"Partitioning by month"): a line lands in its payment's month and a line without a payment in the DEFAULT partition;
the database's keys that hold the month still refuse a second line for one payment, refund, dispute or earlier batch;
the reads that know the payment read its month's partition (settlement's "on no line yet" probes too); a line of an
archived month still counts; and the daily job keeps the lines' months, leaving the lines without a month in the
default.

Each test runs in a transaction that is rolled back, DDL included, so the partitions a test makes go with it.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.partitions import (
    PARTITIONED,
    partition_detach,
    partitions,
    partitions_create,
    partitions_maintain,
)
from payments import services
from payments.models import Dispute, PaymentIntent, SettlementBatch, SettlementLine
from payments.services.refunds import refund_correction
from payments.services.settlement import on_a_line
from tests.factories import FACTORIES
from tests.partitioning import assert_monthly, at, explain, fetch, partition_of, refused, table_keys
from tests.payments import settling

pytestmark = pytest.mark.django_db
_periods = itertools.count()

TABLE = "payments_settlementline"


def _months(year: int) -> None:
    partitions_create(TABLE, dt.date(year, 1, 1), 3)


def _payment_at(when: dt.datetime) -> PaymentIntent:
    """A captured payment created as if at `when`."""
    with mock.patch("django.utils.timezone.now", return_value=when):
        return FACTORIES["payments.paymentintent"]()


def _batch(payment: PaymentIntent) -> SettlementBatch:
    return SettlementBatch.objects.create(
        merchant=payment.merchant, currency="CNY", cycle="t1", period=f"p{next(_periods)}", cutoff_at=timezone.now(),
        settle_on=timezone.localdate(),
    )  # fmt: skip


def _line(batch: SettlementBatch, kind: str, payment: PaymentIntent | None = None, **fields: Any) -> SettlementLine:
    return SettlementLine.objects.create(
        batch=batch, kind=kind, payment=payment, payment_created_at=payment.created_at if payment else None,
        amount=fields.pop("amount", 100), **fields,
    )  # fmt: skip


def _dispute(payment: PaymentIntent) -> Dispute:
    return Dispute.objects.create(
        payment=payment, payment_created_at=payment.created_at, merchant=payment.merchant, channel=payment.channel,
        kind="chargeback", amount=500, currency="CNY", opened_by="channel", respond_by=dt.date(2026, 3, 16),
    )  # fmt: skip


def _single_partition(plan: str, month: str) -> None:
    assert f"{TABLE}_p{month}" in plan, plan
    others = [p.name for p in partitions(TABLE) if p.name != f"{TABLE}_p{month}"]
    assert others
    assert not [name for name in others if name in plan], plan


def test_the_migration_made_a_partitioned_table_whose_keys_hold_the_payments_time() -> None:
    assert_monthly(TABLE, "payment_created_at")
    # Detached before the refunds and payments it refers to.
    order = list(PARTITIONED)
    assert order.index(TABLE) < order.index("payments_refund") < order.index("payments_paymentintent")
    # No primary key (a line without a payment has no month): the ids' key holds the month, NULLs not distinct.
    assert table_keys(TABLE) == {"UNIQUE NULLS NOT DISTINCT (id, payment_created_at)"}
    unique = dict(
        fetch(
            "SELECT indexname, regexp_replace(indexdef, '^.* USING btree ', '') FROM pg_indexes"
            " WHERE tablename = %s AND indexname LIKE 'settlementline_%%once'",
            (TABLE,),
        )
    )
    assert unique == {
        "settlementline_payment_once": "(payment_id, payment_created_at) WHERE ((kind)::text = 'payment'::text)",
        "settlementline_refund_once": "(refund_id, payment_created_at) WHERE ((kind)::text = 'refund'::text)",
        "settlementline_dispute_once": "(dispute_id, payment_created_at) WHERE ((kind)::text = 'dispute'::text)",
        "settlementline_source_once": "(source_id, kind, payment_created_at) NULLS NOT DISTINCT"
        " WHERE (source_id IS NOT NULL)",
    }
    assert fetch(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'payments_settlementline_dispute_fk'"
        " AND conparentid = 0"
    ) == [
        (
            "FOREIGN KEY (dispute_id, payment_created_at) REFERENCES payments_dispute(id, payment_created_at)"
            " DEFERRABLE INITIALLY DEFERRED",
        )
    ]
    # The model keeps `id` and states the rules the keys keep.
    assert SettlementLine._meta.pk is not None
    assert SettlementLine._meta.pk.name == "id"


def test_a_line_lands_in_its_payments_month_and_without_a_payment_in_the_default() -> None:
    _months(2020)
    payment = _payment_at(at(2020, 2, 29))
    batch = _batch(payment)
    assert partition_of(TABLE, _line(batch, "payment", payment).pk) == f"{TABLE}_p202002"
    earlier = _batch(payment)
    assert partition_of(TABLE, _line(batch, "reserve_release", source=earlier).pk) == f"{TABLE}_default"


def test_a_second_line_for_one_payment_refund_dispute_or_earlier_batch_is_still_refused() -> None:
    _months(2021)
    payment = _payment_at(at(2021, 2))
    with mock.patch("django.utils.timezone.now", return_value=payment.created_at + dt.timedelta(days=2)):
        refund = refund_correction(payment, 100, reason="test")
    dispute = _dispute(payment)
    first, second, earlier = _batch(payment), _batch(payment), _batch(payment)
    _line(first, "payment", payment)
    _line(first, "refund", payment, refund=refund, amount=-100)
    _line(first, "dispute", payment, dispute=dispute, amount=-500)
    _line(first, "carried", source=earlier, amount=-10)
    # Each rule as before, in another batch: PostgreSQL names the month's index that refused it, with the key.
    refused(lambda: _line(second, "payment", payment), r"Key \(payment_id, payment_created_at\)")
    refused(lambda: _line(second, "refund", payment, refund=refund), r"Key \(refund_id, payment_created_at\)")
    refused(lambda: _line(second, "dispute", payment, dispute=dispute), r"Key \(dispute_id, payment_created_at\)")
    # Lines with a source have no month: NULLs are not distinct in their key.
    refused(lambda: _line(second, "carried", source=earlier), r"Key \(source_id, kind, payment_created_at\)")
    _line(second, "reserve_release", source=earlier)  # another kind is another line
    # What keeps the meaning: a dispute's line names a payment, and the dispute's; a line with a source names none.
    refused(lambda: _line(second, "dispute", dispute=dispute), "settlementline_dispute_payment")
    other = _payment_at(at(2021, 3))
    refused(lambda: _line(second, "dispute", other, dispute=dispute), "payments_settlementline_dispute_fk")
    refused(lambda: _line(second, "carried", payment, source=_batch(payment)), "settlementline_source_no_payment")
    assert SettlementLine.objects.filter(batch=second).count() == 1


def test_the_reads_that_know_the_payment_read_its_months_partition() -> None:
    _months(2023)
    payment = _payment_at(at(2023, 2))
    with CaptureQueriesContext(connection) as queries:
        assert not on_a_line(payment)  # the void's, the dispute's and reconciliation's reversal's check
    (statement,) = [query["sql"] for query in queries.captured_queries if f'"{TABLE}"' in query["sql"]]
    _single_partition(explain(statement), "202302")
    # The cancel's guarded UPDATE looks for the line the same way.
    guard = SettlementLine.objects.filter(
        payment_id=payment.pk, payment_created_at=payment.created_at, kind=SettlementLine.Kind.PAYMENT
    )
    _single_partition(guard.explain(), "202302")
    _line(_batch(payment), "payment", payment)
    assert on_a_line(payment)


def _executed(statement: str) -> Iterator[tuple[str, int]]:
    """The settlement lines' partitions the statement's plan reads, with how many times it ran each scan."""
    ((plan,),) = fetch("EXPLAIN (ANALYZE, FORMAT JSON) " + statement)

    def walk(node: dict[str, Any]) -> Iterator[tuple[str, int]]:
        name = str(node.get("Relation Name", ""))
        if name.startswith(TABLE):
            yield name, int(node.get("Actual Loops", 0))
        for child in node.get("Plans", []):
            yield from walk(child)

    return walk(plan[0]["Plan"])


def test_settlements_on_no_line_yet_probes_read_the_payments_month_only() -> None:
    """Per payment and refund, the chunk's and the candidates' probe of the lines reads its payment's month's
    partition (pruned as it runs), not every month's index; a reserve's or carried net's probe reads the default."""
    day = dt.date(2024, 6, 12)
    for table in ("payments_paymentintent", "payments_refund", TABLE):
        partitions_create(table, dt.date(2023, 6, 1), 18)
    world = settling.make_world()
    paid = settling.pay(world, 10_000, day)
    settling.refund(paid, 1_000, day)
    with CaptureQueriesContext(connection) as queries:
        services.settle("t1", day.isoformat())
    probes = [
        query["sql"].split("INSERT INTO settle_items", 1)[-1]
        for query in queries.captured_queries
        if "business_date BETWEEN" in query["sql"] and TABLE in query["sql"]
    ]
    assert len(probes) >= 3  # the candidates, the chunk's payments and its refunds
    month = paid.created_at.astimezone(dt.timezone(dt.timedelta(hours=8))).strftime("%Y%m")
    for statement in probes:
        read = {name for name, loops in _executed(statement) if loops}
        assert read <= {f"{TABLE}_p{month}", f"{TABLE}_default"}, (read, statement[:300])
        assert f"{TABLE}_p{month}" in read
    # The lines were written: the payment's and the refund's in the payment's month.
    lines = SettlementLine.objects.filter(payment_id=paid.pk, payment_created_at=paid.created_at)
    assert {partition_of(TABLE, line.pk) for line in lines} == {f"{TABLE}_p{month}"}
    assert lines.count() == 2
    source = explain(
        f"SELECT 1 FROM {TABLE} x WHERE x.source_id = 1 AND x.kind = 'carried' AND x.payment_created_at IS NULL"
    )
    assert f"{TABLE}_default" in source
    assert not [p.name for p in partitions(TABLE) if p.month and p.name in source]


def test_a_line_of_an_archived_month_still_counts() -> None:
    """A payment settled in a month since archived is still on a line: not voided, not disputed as unsettled, not
    settled again once a hold is released."""
    with connection.cursor() as cursor:  # as if committed before the job: no key checks left pending
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    _months(2019)
    payment = _payment_at(at(2019, 2))
    _line(_batch(payment), "payment", payment)
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    assert partition_detach(TABLE, dt.date(2019, 2, 1)) == f"{TABLE}_archive_201902"
    assert not SettlementLine.objects.filter(payment_id=payment.pk).exists()
    assert on_a_line(payment)
    assert not on_a_line(_payment_at(at(2019, 2, 20)))


def test_the_job_makes_the_lines_months_and_leaves_those_without_a_month_in_the_default() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    partitions_create(TABLE, dt.date(2041, 1, 1), 1)
    payment = _payment_at(at(2041, 3))  # no partition for March yet: the DEFAULT partition holds its line
    batch = _batch(payment)
    line = _line(batch, "payment", payment)
    carried = _line(batch, "carried", source=_batch(payment), amount=-5)
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    assert partition_of(TABLE, line.pk) == f"{TABLE}_default"

    result = partitions_maintain(today=dt.date(2041, 5, 10), ahead=1, archive_after=None)

    made = [name for name in result.created if name.startswith(f"{TABLE}_")]
    assert made == [f"{TABLE}_p204103", f"{TABLE}_p204105", f"{TABLE}_p204106"]
    assert partition_of(TABLE, line.pk) == f"{TABLE}_p204103"
    assert partition_of(TABLE, carried.pk) == f"{TABLE}_default"


def test_a_lost_dispute_whose_line_was_archived_is_not_debited_again() -> None:
    """A dispute due is looked for on the lines of every month, archived ones too: its debit is never taken twice."""
    from tests.payments.test_disputes import open_chargeback

    mon, tue, wed = dt.date(2026, 11, 23), dt.date(2026, 11, 24), dt.date(2026, 11, 25)
    partitions_create(TABLE, dt.date(2026, 11, 1), 1)
    world = settling.make_world()
    payment = settling.pay(world, 10_000, mon)
    services.settle("t1", mon.isoformat())
    dispute = open_chargeback(payment, 4_000)
    services.dispute_outcome_record(dispute_id=dispute.pk, outcome="lost")
    Dispute.objects.filter(pk=dispute.pk).update(closed_at=settling.at(tue, 9))
    settling.pay(world, 6_000, tue)
    services.settle("t1", tue.isoformat())
    line = SettlementLine.objects.get(kind="dispute", dispute=dispute)
    assert partition_of(TABLE, line.pk) == f"{TABLE}_p202611"
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    assert partition_detach(TABLE, dt.date(2026, 11, 1)) == f"{TABLE}_archive_202611"
    assert not SettlementLine.objects.filter(dispute=dispute).exists()

    settling.pay(world, 1_000, wed)
    services.settle("t1", wed.isoformat())
    wednesday = SettlementBatch.objects.get(merchant=world["merchant"], period=wed.isoformat())
    assert wednesday.dispute_debits == 0
    assert not SettlementLine.objects.filter(kind="dispute").exists()  # none written since
    assert on_a_line(payment)
