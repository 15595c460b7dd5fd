"""The ledger distributed on Citus (docs/scaling.md, "Citus"): which shards a posting's entries land on, and that a
posting over several shards commits or rolls back as a whole. Runs only against a database `citus_distribute` has
distributed (`make citus-test`); skipped with the reason elsewhere, where the command must refuse."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from core.errors import InsufficientFunds
from rewards import services as s
from rewards.models import Account, Entry, LedgerTransaction
from rewards.selectors import payment_movements
from rewards.services.accounts import shard_for
from tests.factories import CardholderFactory, PointsProgramFactory, bank_operator

pytestmark = pytest.mark.django_db
citus_only = pytest.mark.skipif(
    not settings.LEDGER_DISTRIBUTED, reason="needs the ledger distributed on Citus: make citus-test"
)


@pytest.fixture
def holder():
    return CardholderFactory()


@pytest.fixture
def programs():
    """Two banks' programmes, a point worth 0.005 and 0.003 CNY."""
    return PointsProgramFactory(point_value_cny=Decimal("0.005")), PointsProgramFactory(
        point_value_cny=Decimal("0.003")
    )


def shards_for(spreads: set[int]) -> set[int]:
    """The entry shards that hold the spreads `spreads`."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT get_shard_id_for_distribution_column('rewards_entry', s) FROM unnest(%s::smallint[]) s",
            [sorted(spreads)],
        )
        return {row[0] for row in cursor.fetchall()}


def shards_of(txn: LedgerTransaction) -> set[int]:
    """The entry shards the transaction's entries were written to (entries are distributed by spread)."""
    return shards_for(set(Entry.objects.filter(transaction=txn).values_list("spread", flat=True)))


@pytest.fixture
def apart_holder():
    """A cardholder whose accounts sit on another shard than the clearing and fee accounts (spread 0)."""
    for _ in range(100):
        holder = CardholderFactory()
        if len(shards_for({0, shard_for(holder.pk)})) == 2:
            return holder
    raise AssertionError("every spread hashes to the shard of spread 0")


@citus_only
def test_accounts_and_entries_are_distributed_and_co_located() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT logicalrelid::regclass::text, partmethod, colocationid FROM pg_dist_partition"
            " WHERE logicalrelid IN ('rewards_account'::regclass, 'rewards_entry'::regclass,"
            " 'members_memberbank'::regclass) ORDER BY 1"
        )
        rows = cursor.fetchall()
    kinds = {name: method for name, method, _ in rows}
    assert kinds == {"members_memberbank": "n", "rewards_account": "h", "rewards_entry": "h"}
    colocation = {name: group for name, _, group in rows}
    assert colocation["rewards_account"] == colocation["rewards_entry"]


@citus_only
def test_the_coordinators_partitioned_tables_stay_plain_and_partitioned() -> None:
    """The ledger's transactions, payments, attempts, refunds, fee splits, disputes, reconciliation exceptions, events
    and deliveries keep out of Citus's metadata (Citus cannot convert a partitioned table with CHECK constraints),
    still partitioned, and the daily job still makes their months. The keys among them stay (a payment's to its points
    spend, a fee split's to its payment and refund); those to and from the other tables are dropped, and so are those
    to the keys' rows, which stay a plain table."""
    from core.partitions import PARTITIONED, partitions_maintain

    local = [table for table in PARTITIONED if table != "rewards_entry"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT logicalrelid::regclass::text FROM pg_dist_partition")
        in_citus = {row[0] for row in cursor.fetchall()}
        cursor.execute("SELECT partrelid::regclass::text FROM pg_partitioned_table")
        partitioned = {row[0] for row in cursor.fetchall()}
        cursor.execute(
            "SELECT conrelid::regclass::text FROM pg_constraint WHERE contype = 'f' AND conparentid = 0"
            " AND confrelid = 'rewards_ledgertransaction'::regclass"
        )
        referring = {row[0] for row in cursor.fetchall()}
    assert "rewards_ledgertransaction" in local
    assert not in_citus & set(local)
    assert set(local) <= partitioned
    # A payment's key to its points spend, a written-off exception's to its posting (a reversal's refers to the key's
    # row of what it reverses, which is not partitioned: dropped, as every key to the keys' rows).
    assert referring == {"payments_paymentintent", "payments_reconciliationexception"}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND confrelid = 'rewards_ledgerkey'::regclass"
        )
        assert cursor.fetchone() == (0,)
        cursor.execute("SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = 'rewards_ledgerkey'::regclass")
        assert cursor.fetchone() == (0,)  # a plain table of the coordinator's
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT confrelid::regclass::text FROM pg_constraint WHERE contype = 'f' AND conparentid = 0"
            " AND conrelid = 'payments_feesplit'::regclass"
        )
        fee_split_keys = {row[0] for row in cursor.fetchall()}
    assert fee_split_keys == {"payments_paymentintent", "payments_refund"}  # not the bank's nor the schedule's
    created = partitions_maintain(ahead=24).created
    assert {name.rsplit("_p", 1)[0] for name in created} >= set(local)


@citus_only
def test_more_spreads_reach_more_shards_and_each_earn_still_one(programs) -> None:
    """Citus hashes each spread to a shard, so 8 spreads leave most of 32 shards empty; `citus_distribute` says how
    many the configured spreads reach and how many would reach most. With more spreads (more bank sub-accounts per
    programme) a cardholder's earn still touches one shard, and the cardholders' earns spread over more of them."""
    from rewards.management.commands.citus_distribute import entry_shards, reach_report, spread_reach

    shards = entry_shards()
    few, many = spread_reach(8), spread_reach(64)
    assert few <= 8
    assert few < many <= shards
    report, warned = reach_report(8)
    assert f"reach {few} of {shards} entry shards" in report
    assert warned == (few * 2 < shards)
    if warned:
        assert "would reach" in report

    with override_settings(LEDGER_BANK_SHARDS=64):
        earns = [
            s.points_earn(cardholder_id=CardholderFactory().pk, program=programs[0], amount=10, idempotency_key=f"e{n}")
            for n in range(96)
        ]
        assert all(len(shards_of(txn)) == 1 for txn in earns)
        reached = set().union(*(shards_of(txn) for txn in earns))
    assert len(reached) > few


@citus_only
def test_an_earn_touches_the_wallet_and_one_issuance_sub_account_on_one_shard(apart_holder, programs) -> None:
    program = programs[0]
    txn = s.points_earn(cardholder_id=apart_holder.pk, program=program, amount=100, idempotency_key="earn")
    entries = list(Entry.objects.filter(transaction=txn))
    accounts = Account.objects.filter(pk__in={e.account_id for e in entries})
    assert len(accounts) == 2  # the wallet and the bank's issuance sub-account
    assert {e.spread for e in entries} == {a.spread for a in accounts} == {shard_for(apart_holder.pk)}
    assert len(shards_of(txn)) == 1


@citus_only
def test_a_redemption_and_a_hold_touch_one_shard(apart_holder, programs) -> None:
    """The wallet, the bank's redemption and breakage sub-accounts for the cardholder: one spread, one shard; the
    statements locking and writing them are routed there (none is sent to every shard)."""
    program = programs[0]
    s.points_earn(cardholder_id=apart_holder.pk, program=program, amount=100, idempotency_key="e")
    s.points_redeem(cardholder_id=apart_holder.pk, program=program, amount=1, idempotency_key="warm")  # creates
    with CaptureQueriesContext(connection) as queries:
        redeemed = s.points_redeem(cardholder_id=apart_holder.pk, program=program, amount=10, idempotency_key="r")
    assert len(shards_of(redeemed)) == 1
    on_accounts = [q["sql"] for q in queries.captured_queries if '"rewards_account"' in q["sql"]]
    assert on_accounts
    assert all('"spread"' in sql for sql in on_accounts), on_accounts
    hold = s.hold_create(cardholder_id=apart_holder.pk, program=program, amount=20, idempotency_key="h")
    posted = s.hold_post(hold_id=hold.pk, idempotency_key="hp")
    assert len(shards_of(posted)) == 1
    spreads = set(Account.objects.filter(program=program).values_list("spread", flat=True))
    assert spreads == {shard_for(apart_holder.pk)}  # the wallet and every bank sub-account serving it
    assert shards_of(redeemed) == shards_of(posted)


@citus_only
def test_an_exchange_between_two_banks_spans_several_shards_and_balances(apart_holder, programs) -> None:
    """The cardholder's wallets and the banks' sub-accounts on the cardholder's shard, the banks' CNY clearing and
    the alliance's fee account on spread 0's: a two-phase-commit transaction."""
    holder = apart_holder
    src, dst = programs
    s.points_earn(cardholder_id=holder.pk, program=src, amount=1000, idempotency_key="e")
    txn = s.points_exchange(cardholder_id=holder.pk, from_program=src, to_program=dst, amount=1000, idempotency_key="x")
    entries = Entry.objects.filter(transaction=txn)
    assert len({e.account_id for e in entries}) >= 5  # two wallets, two banks' issuance, CNY positions and the fee
    assert len(shards_of(txn)) >= 2
    assert sum(e.amount for e in entries if e.unit == "CNY") == 0


@citus_only
def test_a_failing_multi_shard_posting_leaves_no_row_on_any_shard(holder, programs) -> None:
    src, dst = programs
    s.points_earn(cardholder_id=holder.pk, program=src, amount=500, idempotency_key="e")
    before = (Entry.objects.count(), LedgerTransaction.objects.count(), sorted(Account.objects.values_list("posted")))
    with pytest.raises(InsufficientFunds):
        s.points_exchange(cardholder_id=holder.pk, from_program=src, to_program=dst, amount=600, idempotency_key="x")
    after = (Entry.objects.count(), LedgerTransaction.objects.count(), sorted(Account.objects.values_list("posted")))
    assert after == before


@citus_only
def test_a_posting_that_creates_accounts_creates_them_before_locking_any(holder, programs) -> None:
    """Citus locks in shard order, not in the order accounts were made: a first redemption holding the (old) wallet
    while it locked its new redemption and breakage accounts deadlocked with later redemptions locking all three in
    shard order, and outlived every retry of theirs. So nothing is locked until the missing accounts exist."""
    program = programs[0]
    s.points_earn(cardholder_id=holder.pk, program=program, amount=100, idempotency_key="e")
    accounts_before = Account.objects.count()
    with CaptureQueriesContext(connection) as queries:
        s.points_redeem(cardholder_id=holder.pk, program=program, amount=10, idempotency_key="r")
    assert Account.objects.count() > accounts_before  # the redemption made its bank's accounts
    on_accounts = [q["sql"] for q in queries.captured_queries if '"rewards_account"' in q["sql"]]
    created = next(i for i, sql in enumerate(on_accounts) if sql.startswith('INSERT INTO "rewards_account"'))
    locking = [i for i, sql in enumerate(on_accounts) if sql.endswith("FOR UPDATE")]
    assert locking, on_accounts
    assert min(locking) > created, on_accounts


@citus_only
def test_reads_joining_entries_to_accounts_and_transactions_run(holder, programs, admin_client) -> None:
    """Entries and accounts are distributed by spread: a read joining them by account alone, with a coordinator table
    beside, is refused by Citus. The cardholder's movements behind a payment and the admin's entries name the spread
    too, and run."""
    program = programs[0]
    txn = s.points_earn(cardholder_id=holder.pk, program=program, amount=40, idempotency_key="payment:pay_1:earn")
    moved = payment_movements(cardholder_id=holder.pk, payment_ref="pay_1", transaction_ids=[])
    assert [(m.transaction_id, m.amount) for m in moved] == [(txn.pk, 40)]
    response = admin_client.get(reverse("admin:rewards_entry_changelist"))
    assert response.status_code == 200
    assert response.context["cl"].result_count == 2  # the wallet's entry and the issuance sub-account's


@citus_only
def test_a_bank_operators_ledger_transactions_run(holder, programs, client) -> None:
    """A bank operator's list of ledger transactions (and the dashboard's points, narrowed to the bank) is scoped
    through the entries' accounts: beside the transactions, a coordinator table, the entries are read in a subquery of
    their own, joined to their accounts by spread too, and the list runs."""
    mine, theirs = programs
    earned = s.points_earn(cardholder_id=holder.pk, program=mine, amount=40, idempotency_key="mine")
    s.points_earn(cardholder_id=holder.pk, program=theirs, amount=30, idempotency_key="theirs")
    client.force_login(bank_operator(mine.bank))
    response = client.get(reverse("admin:rewards_ledgertransaction_changelist"))
    assert response.status_code == 200
    assert [txn.pk for txn in response.context["cl"].result_list] == [earned.pk]
    assert client.get(reverse("admin:index"), {"bank": mine.bank.pk}).status_code == 200  # the points tiles too


@pytest.mark.skipif(settings.LEDGER_DISTRIBUTED, reason="on Citus the command distributes instead")
def test_distributing_refuses_a_database_without_citus() -> None:
    with pytest.raises(CommandError, match="citus extension is not in this database"):
        call_command("citus_distribute")
    assert Account._meta.db_table in {t.name for t in connection.introspection.get_table_list(connection.cursor())}
