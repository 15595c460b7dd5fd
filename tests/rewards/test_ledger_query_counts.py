"""The ledger's statement counts, pinned: a plain earn costs a fixed handful, and the expiry jobs cost the same
whatever the number of wallets (set-based, one chunk here)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from core.jobs import job_run
from core.models import JobRun
from rewards import services as s
from rewards.checks import ledger_verify
from rewards.models import Entry, Hold, LedgerTransaction
from tests.factories import CardholderFactory, PointsProgramFactory

# Transactional, as in production: the posting owns its transaction (no test-wide savepoints).
pytestmark = pytest.mark.django_db(transaction=True)


def _locking_reads(accounts: int | None = None) -> int:
    """The statements that lock `accounts` accounts (None: any number): one `SELECT … FOR UPDATE` on PostgreSQL; on
    Citus, where one covers a single shard, the read of their shards, then one per shard — never more than the table's
    shards."""
    if not settings.LEDGER_DISTRIBUTED:
        return 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM pg_dist_shard WHERE logicalrelid = 'rewards_account'::regclass")
        shards = int(cursor.fetchone()[0])
    return 1 + min(accounts if accounts is not None else shards, shards)


def _creating() -> int:
    """The statements that create missing accounts among those being locked: the insert, then the locking reads
    again; on Citus first their creation locks and a second look (`creation_locks`)."""
    return (2 if settings.LEDGER_DISTRIBUTED else 0) + 1 + _locking_reads()


# A plain earn: BEGIN, the transaction row and its key's row (the key is unique across the partitioned transactions'
# months in its own table), the locking read of its three accounts, the lot, its entry count (known once its legs
# are, after the row took the key), the two balances it changes (wallet and issuance), the entries, COMMIT.
def _earn_queries() -> int:
    return 9 + _locking_reads(3)


def test_a_plain_earn_stays_within_its_statements(django_assert_max_num_queries: Any) -> None:
    program, holder = PointsProgramFactory(), CardholderFactory()
    s.points_earn(cardholder_id=holder.pk, program=program, amount=10, idempotency_key="first")  # creates accounts
    with django_assert_max_num_queries(_earn_queries()):
        txn = s.points_earn(cardholder_id=holder.pk, program=program, amount=25, idempotency_key="measured")
    assert sorted(Entry.objects.filter(transaction=txn).values_list("amount", flat=True)) == [-25, 25]
    assert s.wallet_account(holder.pk, program).posted == 35
    with django_assert_max_num_queries(_earn_queries()):  # a replay: BEGIN, the insert that fails, ROLLBACK, the read
        assert s.points_earn(cardholder_id=holder.pk, program=program, amount=25, idempotency_key="measured") == txn


# One chunk of lot expiry: the wallets with overdue lots; BEGIN, the locking read of the wallets and their breakage
# accounts (which a first run creates, then locks again), the one statement that writes, COMMIT. One chunk of the hold
# sweep: BEGIN, the wallets with holds due, their locks, the one statement, COMMIT. No count depends on the number of
# wallets.
def _expiry_queries() -> int:
    return 4 + _locking_reads() + _creating()


def _hold_sweep_queries() -> int:
    return 4 + _locking_reads()


def _overdue_wallets(n: int) -> None:
    program = PointsProgramFactory(expiry_policy="end_of_year", expiry_period=1)
    for i in range(n):
        holder = CardholderFactory()
        s.points_earn(
            cardholder_id=holder.pk,
            program=program,
            amount=100,
            idempotency_key=f"old{i}",
            earned_on=dt.date(2020, 1, 1),
        )
        s.points_earn(cardholder_id=holder.pk, program=program, amount=7, idempotency_key=f"new{i}")


def _held_wallets(n: int) -> None:
    program = PointsProgramFactory()
    for i in range(n):
        holder = CardholderFactory()
        s.points_earn(cardholder_id=holder.pk, program=program, amount=100, idempotency_key=f"e{i}")
        for j in range(2):  # one hold due, one not
            s.hold_create(
                cardholder_id=holder.pk,
                program=program,
                amount=5,
                idempotency_key=f"h{i}:{j}",
                expires_at=timezone.now() + dt.timedelta(minutes=1 + 10 * j),
            )


@pytest.mark.parametrize("wallets", [5, 50])
def test_lot_expiry_statements_do_not_grow_with_wallets(wallets: int, django_assert_max_num_queries: Any) -> None:
    _overdue_wallets(wallets)
    on = dt.date(2022, 1, 1)  # the 2020 lots' last valid day was 2021-12-31
    with django_assert_max_num_queries(_expiry_queries()):
        counts = s.lots_expire(on=on)
    assert counts == {"accounts": wallets, "points": 100 * wallets}
    assert LedgerTransaction.objects.filter(kind="expire").count() == wallets
    assert s.lots_expire(on=on) == {"accounts": 0, "points": 0}  # a second run finds nothing
    assert ledger_verify(seals=False).violations == []


@pytest.mark.parametrize("wallets", [5, 50])
def test_hold_sweep_statements_do_not_grow_with_wallets(wallets: int, django_assert_max_num_queries: Any) -> None:
    _held_wallets(wallets)
    later = timezone.now() + dt.timedelta(minutes=5)
    with django_assert_max_num_queries(_hold_sweep_queries()):
        expired = s.holds_expire(now=later)
    assert expired == wallets
    assert Hold.objects.filter(status="expired").count() == wallets
    assert Hold.objects.filter(status="pending").count() == wallets
    assert s.holds_expire(now=later) == 0
    assert ledger_verify(seals=False).violations == []


def test_expiry_in_chunks_records_its_progress_on_the_job_run() -> None:
    _overdue_wallets(7)
    with job_run("rewards.lots_expire", period="test") as run:
        counts = s.lots_expire(on=dt.date(2022, 1, 1), chunk=3, progress=run.advance)
    assert counts == {"accounts": 7, "points": 700}
    recorded = JobRun.objects.get(job="rewards.lots_expire", period="test")
    assert (recorded.status, recorded.done, recorded.counts) == ("succeeded", 7, {"accounts": 7, "points": 700})
    assert ledger_verify(seals=False).violations == []
