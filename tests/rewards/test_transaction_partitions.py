"""Ledger transactions are partitioned by month on their created_at (rewards/migrations/0023, docs/scaling.md
"Partitioning by month"): the database's key is `(id, created_at)`, the idempotency key stays unique across every month
through `rewards_ledgerkey`, every table that refers to a transaction does so by `(id, created_at)`, and the services'
reads that know a transaction's time read its month's partition only.

Each test runs in a transaction that is rolled back, DDL included, so the partitions a test makes go with it (the
parallel test commits, and makes no partition).
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from unittest import mock

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alliance.services.clearing import day_bounds, entries_sql
from core.errors import IdempotencyConflict
from core.partitions import PARTITIONED, partition_detach, partitions, partitions_create, partitions_maintain
from rewards import services as s
from rewards.checks import ledger_verify
from rewards.models import Entry, LedgerKey, LedgerTransaction, Lot
from tests.concurrency import Background
from tests.factories import CardholderFactory, PointsProgramFactory
from tests.partitioning import (
    assert_monthly,
    at,
    explain,
    fetch,
    immediately,
    partition_of,
    referring_keys,
    table_keys,
)

TABLE = "rewards_ledgertransaction"
REAL_NOW = timezone.now


def _earn_at(
    when: dt.datetime, holder: Any, program: Any, key: str, amount: int = 100, earned_on: dt.date | None = None
) -> LedgerTransaction:
    with mock.patch("django.utils.timezone.now", return_value=when):
        return s.points_earn(
            cardholder_id=holder.pk, program=program, amount=amount, idempotency_key=key, earned_on=earned_on
        )


def _only_partition(plan: str, month: str) -> None:
    """The plan reads the transactions' partition of `month` and no other."""
    assert f"{TABLE}_p{month}" in plan, plan
    others = [p.name for p in partitions(TABLE) if p.name != f"{TABLE}_p{month}"]
    assert len(others) >= 2
    assert not [name for name in others if name in plan], plan


def _reads_of_transactions(queries: CaptureQueriesContext) -> list[str]:
    return [
        query["sql"]
        for query in queries.captured_queries
        if query["sql"].startswith("SELECT") and f'FROM "{TABLE}"' in query["sql"]
    ]


@pytest.mark.django_db
def test_the_migration_made_a_partitioned_table_keyed_with_its_time_and_every_reference_holds_it() -> None:
    assert_monthly(TABLE, "created_at")
    order = list(PARTITIONED)
    assert order.index("rewards_entry") < order.index(TABLE)  # entries refer to transactions: detached first
    assert table_keys(TABLE) == {"PRIMARY KEY (id, created_at)"}
    assert LedgerTransaction._meta.pk is not None
    assert LedgerTransaction._meta.pk.name == "id"
    assert table_keys("rewards_ledgerkey") == {
        "PRIMARY KEY (idempotency_key)",
        "UNIQUE (transaction_id)",
        "UNIQUE (idempotency_key, transaction_id, transaction_created_at)",
        "UNIQUE (transaction_id, transaction_created_at)",
    }
    # The transaction refers to its key's row (rewards/migrations/0026), and so does everything that refers to a
    # transaction from a table that is not partitioned, a reversal's reference to what it reverses among them (0027).
    # The key's row refers to nothing: a month of transactions can go to an archive while its keys, and the lots,
    # holds, vouchers and promotion uses naming them, stay.
    to_key = (
        "REFERENCES rewards_ledgerkey(transaction_id, transaction_created_at)"
        " ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED"
    )
    assert set(referring_keys("rewards_ledgerkey")) == {
        (
            TABLE,
            "FOREIGN KEY (idempotency_key, id, created_at)"
            " REFERENCES rewards_ledgerkey(idempotency_key, transaction_id, transaction_created_at)"
            " ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED",
        ),
        (TABLE, f"FOREIGN KEY (reverses_id, reverses_created_at) {to_key}"),
        ("rewards_hold", f"FOREIGN KEY (transaction_id, transaction_created_at) {to_key}"),
        ("rewards_lot", f"FOREIGN KEY (earned_by_id, earned_by_created_at) {to_key}"),
        ("rewards_lotmovement", f"FOREIGN KEY (transaction_id, transaction_created_at) {to_key}"),
        ("rewards_voucherpayment", f"FOREIGN KEY (transaction_id, transaction_created_at) {to_key}"),
        ("rewards_promotionuse", f"FOREIGN KEY (points_transaction_id, points_transaction_created_at) {to_key}"),
    }
    assert fetch(
        "SELECT count(*) FROM pg_constraint WHERE conrelid = 'rewards_ledgerkey'::regclass AND contype = 'f'"
    ) == [(0,)]
    # What still refers to the transaction itself is partitioned, and its months are detached first.
    to = "REFERENCES rewards_ledgertransaction(id, created_at) ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED"
    assert set(referring_keys(TABLE)) == {
        ("rewards_entry", f"FOREIGN KEY (transaction_id, created_at) {to}"),
        ("payments_paymentintent", f"FOREIGN KEY (points_spend_id, points_spend_created_at) {to}"),
        (
            "payments_reconciliationexception",
            f"FOREIGN KEY (write_off_transaction_id, write_off_transaction_created_at) {to}",
        ),
    }
    for referrer, _definition in referring_keys(TABLE):
        assert order.index(referrer) < order.index(TABLE)


@pytest.mark.django_db
def test_a_posting_and_everything_referring_to_it_carry_its_month() -> None:
    partitions_create(TABLE, dt.date(2022, 1, 1), 3)
    partitions_create("rewards_entry", dt.date(2022, 1, 1), 3)
    program, holder = PointsProgramFactory(), CardholderFactory()
    earn = _earn_at(at(2022, 1), holder, program, "earn")
    with mock.patch("django.utils.timezone.now", return_value=at(2022, 2)):
        spend = s.points_redeem(cardholder_id=holder.pk, program=program, amount=30, idempotency_key="spend")
        reversal = s.transaction_reverse(
            transaction_id=earn.pk, transaction_created_at=earn.created_at, amount=10, idempotency_key="back"
        )
    assert reversal is not None
    assert (partition_of(TABLE, earn.pk), partition_of(TABLE, spend.pk)) == (f"{TABLE}_p202201", f"{TABLE}_p202202")
    assert (reversal.reverses_id, reversal.reverses_created_at) == (earn.pk, earn.created_at)
    key = LedgerKey.objects.get(idempotency_key="spend")
    assert (key.transaction_id, key.transaction_created_at) == (spend.pk, spend.created_at)
    lot = Lot.objects.get(earned_by=earn)
    assert lot.earned_by_created_at == earn.created_at
    assert {m.transaction_created_at for m in spend.lot_movements.all()} == {spend.created_at}
    assert set(Entry.objects.filter(transaction=earn).values_list("created_at", flat=True)) == {earn.created_at}
    # A reference dated otherwise than its transaction is refused by the composite key.
    fetch("SET CONSTRAINTS ALL IMMEDIATE")
    with pytest.raises(IntegrityError, match="rewards_lot_earned_by_id_fk"), transaction.atomic():
        Lot.objects.filter(pk=lot.pk).update(earned_by_created_at=earn.created_at + dt.timedelta(seconds=1))


@pytest.mark.django_db
def test_a_nullable_reference_without_its_time_is_refused() -> None:
    program, holder = PointsProgramFactory(), CardholderFactory()
    earn = s.points_earn(cardholder_id=holder.pk, program=program, amount=100, idempotency_key="earn")
    hold = s.hold_create(cardholder_id=holder.pk, program=program, amount=10, idempotency_key="hold")
    with pytest.raises(IntegrityError, match="rewards_hold_transaction_created_at_set"), transaction.atomic():
        type(hold).objects.filter(pk=hold.pk).update(transaction_id=earn.pk)


@pytest.mark.django_db
def test_a_retry_in_another_month_replays_the_first_posting() -> None:
    partitions_create(TABLE, dt.date(2022, 1, 1), 3)
    program, holder = PointsProgramFactory(), CardholderFactory()
    first = _earn_at(at(2022, 1), holder, program, "once", earned_on=dt.date(2022, 1, 15))
    again = _earn_at(at(2022, 3), holder, program, "once", earned_on=dt.date(2022, 1, 15))  # the same request
    assert again.pk == first.pk
    assert again.created_at == first.created_at
    assert LedgerTransaction.objects.filter(idempotency_key="once").count() == 1
    assert s.wallet_account(holder.pk, program).posted == 100
    # The partitioned table alone would take the key twice (its keys hold the month): the keys' table refuses it.
    with transaction.atomic():
        fetch(
            f"INSERT INTO {TABLE} (kind, idempotency_key, request_hash, points, reversed_points, metadata,"
            " actor_label, entry_count, created_at) VALUES ('adjust', 'once', '-', 0, 0, '{}', 'system', 0, %s)",
            (at(2022, 2),),
        )
        transaction.set_rollback(True)
    with pytest.raises(IntegrityError, match="rewards_ledgerkey_pkey"), transaction.atomic():
        fetch(
            "INSERT INTO rewards_ledgerkey (idempotency_key, transaction_id, transaction_created_at)"
            " VALUES ('once', %s, %s)",
            (first.pk, first.created_at),
        )


def _bare_transaction(key: str, when: dt.datetime) -> int:
    """A ledger transaction with no entries (so nothing else refers to it), written as SQL; its id."""
    ((pk,),) = fetch(
        f"INSERT INTO {TABLE} (kind, idempotency_key, request_hash, points, reversed_points, metadata, actor_label,"
        " entry_count, created_at) VALUES ('adjust', %s, '-', 0, 0, '{}', 'system', 0, %s) RETURNING id",
        (key, when),
    )
    return int(pk)


def _key_row(key: str, pk: int, when: dt.datetime) -> None:
    fetch(
        "INSERT INTO rewards_ledgerkey (idempotency_key, transaction_id, transaction_created_at) VALUES (%s, %s, %s)",
        (key, pk, when),
    )


def _committed(write: Callable[[], Any]) -> Any:
    """`write()`, then its deferred keys checked as at a commit (`SET CONSTRAINTS ALL IMMEDIATE` checks what is
    pending), in a savepoint."""
    with transaction.atomic():
        done = write()
        fetch("SET CONSTRAINTS ALL IMMEDIATE")
        fetch("SET CONSTRAINTS ALL DEFERRED")
        return done


def _keyed_bare(key: str, when: dt.datetime, *, named: int = 0, named_at: dt.timedelta = dt.timedelta()) -> int:
    """`_bare_transaction` and its key's row, which names the transaction `named` ids further and `named_at` later."""
    pk = _bare_transaction(key, when)
    _key_row(key, pk + named, when + named_at)
    return pk


@pytest.mark.django_db
def test_a_transaction_commits_only_with_its_keys_row_naming_it() -> None:
    partitions_create(TABLE, dt.date(2022, 1, 1), 2)
    fk = "rewards_ledgertransaction_key_fk"
    # No key's row: refused.
    with pytest.raises(IntegrityError, match=fk):
        _committed(lambda: _bare_transaction("keyless", at(2022, 1)))
    # A key's row naming another time, or another transaction: refused.
    with pytest.raises(IntegrityError, match=fk):
        _committed(lambda: _keyed_bare("late", at(2022, 1), named_at=dt.timedelta(seconds=1)))
    with pytest.raises(IntegrityError, match=fk):
        _committed(lambda: _keyed_bare("other", at(2022, 1), named=1))
    # With its own: taken.
    pk = _committed(lambda: _keyed_bare("right", at(2022, 1)))
    assert LedgerKey.objects.get(idempotency_key="right").transaction_id == pk
    assert not LedgerKey.objects.filter(idempotency_key__in=["keyless", "late", "other"]).exists()


@pytest.mark.django_db
def test_a_transaction_is_dated_back_through_its_key_and_everything_carrying_its_time_follows() -> None:
    partitions_create(TABLE, dt.date(2022, 1, 1), 2)
    partitions_create("rewards_entry", dt.date(2022, 1, 1), 2)
    program, holder = PointsProgramFactory(), CardholderFactory()
    earn = _earn_at(at(2022, 2), holder, program, "dated")
    fetch("SET CONSTRAINTS ALL IMMEDIATE")  # every key checked at each statement from here
    # The key alone, as a database where only the keys move it would: the transaction and its referrers follow.
    LedgerKey.objects.filter(transaction_id=earn.pk).update(transaction_created_at=at(2022, 1))
    assert partition_of(TABLE, earn.pk) == f"{TABLE}_p202201"
    assert set(Entry.objects.filter(transaction_id=earn.pk).values_list("created_at", flat=True)) == {at(2022, 1)}
    assert Lot.objects.get(earned_by_id=earn.pk).earned_by_created_at == at(2022, 1)
    # The manager's helper, used by the demo and the tests that date transactions back.
    LedgerTransaction.objects.redate([earn.pk], at(2022, 2, 3))
    assert LedgerTransaction.objects.get(pk=earn.pk).created_at == at(2022, 2, 3)
    assert LedgerKey.objects.get(idempotency_key="dated").transaction_created_at == at(2022, 2, 3)
    # The transaction alone cannot move: its key's row would no longer name it.
    with pytest.raises(IntegrityError, match="rewards_ledgertransaction_key_fk"), transaction.atomic():
        LedgerTransaction.objects.filter(pk=earn.pk).update(created_at=at(2022, 1, 20))


@pytest.mark.django_db
def test_a_key_whose_transactions_month_was_archived_is_refused_and_posts_nothing() -> None:
    partitions_create(TABLE, dt.date(2022, 1, 1), 2)
    program, holder = PointsProgramFactory(), CardholderFactory()
    _committed(lambda: _keyed_bare("old-key", at(2022, 1)))
    immediately(lambda: partition_detach(TABLE, dt.date(2022, 1, 1)))
    assert not LedgerTransaction.objects.filter(idempotency_key="old-key").exists()
    assert LedgerKey.objects.filter(idempotency_key="old-key").exists()  # the key's row stays

    with pytest.raises(IdempotencyConflict) as refusal:
        s.points_earn(cardholder_id=holder.pk, program=program, amount=100, idempotency_key="old-key")
    assert refusal.value.code == "idempotency_key_archived"
    assert refusal.value.param == "idempotency_key"
    assert "2022-01" in refusal.value.message
    assert not LedgerTransaction.objects.filter(idempotency_key="old-key").exists()
    assert not Entry.objects.filter(account__owner_id=holder.pk).exists()
    assert not Lot.objects.filter(account__owner_id=holder.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_two_parallel_postings_with_one_key_in_different_months_post_once() -> None:
    """Two connections post with one key at clocks a month apart (so two months' partitions): the second waits on the
    key's row, and once the first commits it gets the first's transaction; one transaction, one earn."""
    program, holder = PointsProgramFactory(), CardholderFactory()
    clocks: dict[int, dt.datetime] = {}
    now = REAL_NOW()

    def clock() -> dt.datetime:
        return clocks.get(threading.get_ident(), REAL_NOW())

    def earn(at: dt.datetime) -> Any:
        clocks[threading.get_ident()] = at
        return s.points_earn(
            cardholder_id=holder.pk, program=program, amount=100, idempotency_key="parallel", earned_on=now.date()
        )

    with mock.patch("django.utils.timezone.now", side_effect=clock):
        first = Background(lambda: earn(now), hold_open=True)  # posted, not committed
        second = Background(lambda: earn(now + dt.timedelta(days=31)))
        waiting = 0
        for _ in range(200):  # until the second waits on the first's key
            (waiting,) = fetch(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )[0]
            if waiting:
                break
            time.sleep(0.05)
        first.release()
        one, two = first.result(), second.result()
    assert waiting == 1  # the second waited on the first's key
    assert isinstance(one, LedgerTransaction)
    assert isinstance(two, LedgerTransaction)
    assert one.pk == two.pk
    assert LedgerTransaction.objects.filter(idempotency_key="parallel").count() == 1
    assert LedgerKey.objects.filter(idempotency_key="parallel").count() == 1
    assert s.wallet_account(holder.pk, program).posted == 100


@pytest.mark.django_db
def test_the_services_read_a_transaction_in_its_months_partition() -> None:
    partitions_create(TABLE, dt.date(2022, 1, 1), 4)
    partitions_create("rewards_entry", dt.date(2022, 1, 1), 4)
    src = PointsProgramFactory(point_value_cny=Decimal("0.005"))
    dst = PointsProgramFactory(point_value_cny=Decimal("0.003"))
    holder = CardholderFactory()
    _earn_at(at(2022, 1), holder, src, "seed", amount=1000)
    with mock.patch("django.utils.timezone.now", return_value=at(2022, 2)):
        exchange = s.points_exchange(
            cardholder_id=holder.pk, from_program=src, to_program=dst, amount=500, idempotency_key="x"
        )

    # Reversing it reads (and locks, and updates) the reversed transaction in February's partition only.
    with mock.patch("django.utils.timezone.now", return_value=at(2022, 3)), CaptureQueriesContext(connection) as q:
        s.transaction_reverse(
            transaction_id=exchange.pk, transaction_created_at=exchange.created_at, amount=100, idempotency_key="r"
        )
    reads = [sql for sql in _reads_of_transactions(q) if f'"{TABLE}"."id" = {exchange.pk}' in sql]
    updates = [
        query["sql"]
        for query in q.captured_queries
        if query["sql"].startswith(f'UPDATE "{TABLE}"') and f'"id" = {exchange.pk}' in query["sql"]
    ]
    assert len(reads) == 2
    assert len(updates) == 1
    for statement in reads + updates:
        _only_partition(explain(statement), "202202")

    # A replay by key reads the key's row, then the transaction in its month.
    with CaptureQueriesContext(connection) as q:
        replayed = s.points_exchange(
            cardholder_id=holder.pk, from_program=src, to_program=dst, amount=500, idempotency_key="x"
        )
    assert replayed.pk == exchange.pk
    reads = _reads_of_transactions(q)
    assert len(reads) == 1
    _only_partition(explain(reads[0]), "202202")

    # The clearing day's transactions: February 15th's are read in February's partition. (The kind of a reversed
    # transaction, a subquery by its id and time, is pruned to its month when it runs.)
    start, end = day_bounds(at(2022, 2).date())
    plan = explain(entries_sql(), {"start": start, "end": end, "currency": "CNY"})
    driving = re.findall(rf"on ({TABLE}_\w+) t\b", plan)
    assert driving == [f"{TABLE}_p202202"], plan

    # The check itself: a read by id alone names every month.
    unbounded = str(LedgerTransaction.objects.filter(pk=exchange.pk).query)
    plan = explain(unbounded.replace(f"= {exchange.pk}", "= %s"), (exchange.pk,))
    assert f"{TABLE}_p202201" in plan
    assert f"{TABLE}_p202202" in plan


@pytest.mark.django_db
def test_the_sealer_reads_the_entries_of_its_batchs_months_only() -> None:
    """A seal's digests read the entries of the months its batch spans: bounded by its first and last transaction's
    time, which is theirs."""
    from rewards.sealing import seal_pending

    partitions_create("rewards_entry", dt.date(2022, 1, 1), 4)
    holder, program = CardholderFactory(), PointsProgramFactory()
    _earn_at(at(2022, 2, 10), holder, program, "a")
    _earn_at(at(2022, 2, 20), holder, program, "b")
    with CaptureQueriesContext(connection) as q:
        assert seal_pending() == 1
    (digests,) = [query["sql"] for query in q.captured_queries if "en_all" in query["sql"]]
    plan = explain(digests)
    assert "rewards_entry_p202202" in plan, plan
    assert not re.findall(r"rewards_entry_p2022(?:01|03|04)", plan), plan


@pytest.mark.django_db
def test_the_job_moves_a_month_of_transactions_out_of_the_default_though_many_tables_refer_to_them() -> None:
    partitions_create(TABLE, dt.date(2043, 1, 1), 1)
    partitions_create("rewards_entry", dt.date(2043, 1, 1), 1)
    program, holder = PointsProgramFactory(), CardholderFactory()
    earn = _earn_at(at(2043, 3), holder, program, "march")  # no March yet: the DEFAULT partitions hold it
    with mock.patch("django.utils.timezone.now", return_value=at(2043, 3, 20)):
        reversal = s.transaction_reverse(
            transaction_id=earn.pk, transaction_created_at=earn.created_at, amount=10, idempotency_key="back"
        )
    assert reversal is not None
    assert partition_of(TABLE, earn.pk) == f"{TABLE}_default"
    # The job runs in a transaction of its own: no checks pending, and its own deferred as in any new transaction
    # (the rows it copies queue theirs, which must not stop it adding back the transactions' key to themselves).
    fetch("SET CONSTRAINTS ALL IMMEDIATE")
    fetch("SET CONSTRAINTS ALL DEFERRED")
    result = partitions_maintain(today=dt.date(2043, 5, 10), ahead=0, archive_after=None)
    assert f"{TABLE}_p204303" in result.created
    assert (partition_of(TABLE, earn.pk), partition_of(TABLE, reversal.pk)) == (f"{TABLE}_p204303", f"{TABLE}_p204303")
    # Every key that refers to the transactions is there again (three tables'), so is theirs and the rest's to their
    # keys' rows, and they hold.
    assert fetch(
        f"SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND confrelid = '{TABLE}'::regclass"
        " AND conparentid = 0"
    ) == [(3,)]
    assert len(referring_keys("rewards_ledgerkey")) == 7
    fetch("SET CONSTRAINTS ALL IMMEDIATE")  # the moved rows' keys, checked
    assert ledger_verify(seals=False).violations == []
