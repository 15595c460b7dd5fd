"""Months of the ledger's transactions archived by the partitions job (docs/scaling.md, "Archiving the ledger").

Lots, lot movements, holds, voucher payments, promotion uses and a reversal refer to a transaction's key's row, which
outlives the month (rewards/migrations/0027): the job detaches a month of entries, then of transactions, once refunds
can no longer reverse them and no voucher they paid for may be cancelled. What was posted stays the ledger's: the
points earned stay spendable, the statement and `ledger_check` read the archives, and the keys stay taken."""

from __future__ import annotations

import datetime as dt
from typing import Any
from unittest import mock

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from core.errors import Conflict, IdempotencyConflict
from core.models import ArchivedMonth
from core.partitions import (
    OPEN_ROWS,
    WRITTEN_FOR_DAYS,
    archived_months_holding,
    has_open_rows,
    partitions_create,
    partitions_maintain,
    referred_by,
)
from rewards import services as s
from rewards.checks import ledger_verify
from rewards.models import Entry, LedgerKey, LedgerTransaction, Lot, LotMovement, Voucher
from rewards.sealing import seal_pending
from rewards.selectors import account_statement, name_sources
from tests.factories import (
    AllianceOperatorFactory,
    CardholderFactory,
    MemberBankFactory,
    PointsProgramFactory,
    _voucher_at_new_bank,
    bank_operator,
)
from tests.partitioning import at, explain, fetch

pytestmark = pytest.mark.django_db

TABLE = "rewards_ledgertransaction"


def _at(when: dt.datetime) -> Any:
    return mock.patch("django.utils.timezone.now", return_value=when)


def _maintain(today: dt.date, archive_after: int = 12) -> Any:
    # The job runs in a transaction of its own; here the rows were written in the test's, whose deferred key checks
    # are made first (PostgreSQL alters no table with checks pending).
    fetch("SET CONSTRAINTS ALL IMMEDIATE")
    result = partitions_maintain(today=today, ahead=1, archive_after=archive_after)
    fetch("SET CONSTRAINTS ALL DEFERRED")
    return result


def test_the_job_finds_a_payment_naming_a_month_of_transactions_by_index() -> None:
    """Before a month of transactions goes, the job looks for payments whose points spend it holds (`referred_by`);
    an index on the spend's time (payments paid partly with points only) serves that, in every month of payments:
    the job's own query, planned."""
    with CaptureQueriesContext(connection) as queries:
        assert referred_by(TABLE, dt.date(2036, 1, 1)) == []
    (asked,) = [q["sql"] for q in queries.captured_queries if '"payments_paymentintent"' in q["sql"]]
    fetch("SET LOCAL enable_seqscan = off")
    plan = explain(asked)
    assert "Seq Scan" not in plan, plan
    assert "points_spend_created_at_idx" in plan, plan


def test_the_ledger_is_kept_while_refunds_may_reverse_it_and_while_a_voucher_it_paid_may_be_cancelled() -> None:
    assert WRITTEN_FOR_DAYS[TABLE] == WRITTEN_FOR_DAYS["rewards_entry"] == WRITTEN_FOR_DAYS["payments_refund"]
    assert {TABLE, "rewards_entry"} <= set(OPEN_ROWS)
    partitions_create(TABLE, dt.date(2036, 1, 1), 1)
    partitions_create("rewards_entry", dt.date(2036, 1, 1), 1)
    voucher = _voucher_at_new_bank()
    payment = voucher.payments.get()
    LedgerTransaction.objects.redate([payment.transaction_id], at(2036, 1))
    january = dt.date(2036, 1, 1)
    assert has_open_rows(TABLE, january)
    assert has_open_rows("rewards_entry", january)

    # Within the refunds' span the month is kept whatever else holds.
    soon = _maintain(january + dt.timedelta(days=WRITTEN_FOR_DAYS[TABLE]), archive_after=1)
    assert f"{TABLE}_p203601: rows of it may be written until" in " ".join(soon.kept)
    # Past it, the voucher still issued keeps it: its cancellation would reverse the transaction that paid for it.
    later = _maintain(dt.date(2037, 6, 10))
    assert (
        f"{TABLE}_p203601: some of its rows are still open: a transaction of it paid for a voucher still issued"
        in later.kept
    )
    assert (
        "rewards_entry_p203601: some of its rows are still open: a transaction of it paid for a voucher still issued"
        in later.kept
    )
    assert LedgerTransaction.objects.filter(pk=payment.transaction_id).exists()

    Voucher.objects.filter(pk=voucher.pk).update(state=Voucher.State.REDEEMED)
    assert seal_pending() >= 1
    assert not has_open_rows(TABLE, january)
    done = _maintain(dt.date(2037, 6, 10))
    assert done.archived.index("rewards_entry_archive_203601") < done.archived.index(f"{TABLE}_archive_203601")
    assert not LedgerTransaction.objects.filter(pk=payment.transaction_id).exists()
    # The voucher's payment still names its transaction, through the key's row that stays.
    assert LedgerKey.objects.filter(transaction_id=payment.transaction_id).exists()
    assert voucher.payments.get().transaction_created_at == at(2036, 1)


def test_a_month_holding_a_transaction_not_sealed_yet_is_kept_until_the_sealer_has_hashed_it() -> None:
    """The sealer reads the live months only: a transaction archived before its seal would never be sealed, and the
    seal chain would skip it. The job keeps its month, entries and transactions, until it is sealed."""
    partitions_create(TABLE, dt.date(2036, 1, 1), 1)
    partitions_create("rewards_entry", dt.date(2036, 1, 1), 1)
    program, holder = PointsProgramFactory(), CardholderFactory()
    with _at(at(2036, 1)):
        s.points_earn(cardholder_id=holder.pk, program=program, amount=100, idempotency_key="jan-earn")
    january = dt.date(2036, 1, 1)
    assert has_open_rows(TABLE, january)
    assert has_open_rows("rewards_entry", january)

    kept = _maintain(dt.date(2037, 6, 10))
    assert f"{TABLE}_p203601: some of its rows are still open: a transaction of it is not sealed yet" in kept.kept
    assert "rewards_entry_p203601: some of its rows are still open: a transaction of it is not sealed yet" in kept.kept
    assert not [name for name in kept.archived if name.endswith("_203601")]
    assert LedgerTransaction.objects.filter(idempotency_key="jan-earn").exists()

    assert seal_pending() >= 1
    assert not has_open_rows(TABLE, january)
    assert not has_open_rows("rewards_entry", january)
    done = _maintain(dt.date(2037, 6, 10))
    assert {"rewards_entry_archive_203601", f"{TABLE}_archive_203601"} <= set(done.archived)
    assert ledger_verify().violations == []


def test_an_archived_months_points_stay_spendable_readable_checked_and_their_keys_taken() -> None:
    partitions_create(TABLE, dt.date(2036, 1, 1), 1)
    partitions_create("rewards_entry", dt.date(2036, 1, 1), 1)
    program, holder = PointsProgramFactory(), CardholderFactory()
    with _at(at(2036, 1)):
        earn = s.points_earn(
            cardholder_id=holder.pk, program=program, amount=100, idempotency_key="jan-earn", source="campaign"
        )
        s.points_redeem(cardholder_id=holder.pk, program=program, amount=30, idempotency_key="jan-spend")
    assert seal_pending() >= 1
    assert not LedgerTransaction.objects.filter(idempotency_key__startswith="jan-", seal__isnull=True).exists()
    lot = Lot.objects.get(earned_by_id=earn.pk)

    result = _maintain(dt.date(2037, 6, 10))
    assert {"rewards_entry_archive_203601", f"{TABLE}_archive_203601"} <= set(result.archived)
    assert not LedgerTransaction.objects.filter(idempotency_key__startswith="jan-").exists()
    assert not Entry.objects.filter(transaction_id=earn.pk).exists()
    assert fetch(f"SELECT idempotency_key FROM {TABLE}_archive_203601 ORDER BY id") == [("jan-earn",), ("jan-spend",)]

    # The lot outlives its earn's month, and is spent from as before; the new movement names it.
    with _at(at(2037, 6, 10)):
        spend = s.points_redeem(cardholder_id=holder.pk, program=program, amount=50, idempotency_key="june-spend")
    lot.refresh_from_db()
    assert lot.remaining == 20
    assert LotMovement.objects.get(transaction_id=spend.pk).lot_id == lot.pk

    # The statement reads the archived month's entries and transactions: every line, with its kind and time.
    wallet = s.wallet_account(holder.pk, program)
    lines = account_statement(account_id=wallet.pk).lines
    assert [(line.kind, line.amount, line.balance_after) for line in lines] == [
        ("earn", 100, 100),
        ("spend", -30, 70),
        ("spend", -50, 20),
    ]
    assert lines[0].created_at == earn.created_at
    named = name_sources(account_statement(account_id=wallet.pk), program_id=program.pk).lines
    assert named[0].source == "Campaign bonus"  # what is behind a line is read from the archive too

    # Every invariant holds over the live and archived months, the seals over the archived transactions among them.
    report = ledger_verify()
    assert report.violations == []
    assert [line for line in report.checked if line.startswith("seal chain: ")]

    # The keys stay taken, and the archived earn cannot be reversed: each refused with what happened.
    with pytest.raises(IdempotencyConflict) as taken:
        s.points_earn(cardholder_id=holder.pk, program=program, amount=100, idempotency_key="jan-earn")
    assert taken.value.code == "idempotency_key_archived"
    with pytest.raises(Conflict) as archived:
        s.transaction_reverse(transaction_id=earn.pk, amount=10, idempotency_key="too-late")
    assert (archived.value.code, archived.value.param) == ("transaction_archived", "transaction")
    assert "2036-01" in archived.value.message
    assert not LedgerKey.objects.filter(idempotency_key="too-late").exists()
    wallet.refresh_from_db()
    assert wallet.posted == 20

    # Operators' lists of transactions and entries say where they stop, and link the archived months.
    client = Client()
    client.force_login(AllianceOperatorFactory())
    for model, what in (("ledgertransaction", "Ledger transactions"), ("entry", "Ledger entries")):
        page = client.get(reverse(f"admin:rewards_{model}_changelist"), HTTP_ACCEPT_LANGUAGE="en")
        assert page.status_code == 200
        note = page.content.decode().split('class="help archived-note">')[1].split("</p>")[0]
        assert f"{what} made before 2036-02 have been archived" in note
        table = f"rewards_{model}"
        assert f"{reverse('admin:core_archivedmonth_changelist')}?table__exact={table}" in note

    # Searching the list for an archived transaction's key finds no live row, and says which archived month holds it.
    transactions = reverse("admin:rewards_ledgertransaction_changelist")
    searched = client.get(transactions, {"q": "jan-earn"}, HTTP_ACCEPT_LANGUAGE="en")
    assert searched.context["cl"].result_count == 0
    hits = searched.content.decode().split('class="help archived-hits">')[1].split("</p>")[0]
    assert "No live row matches “jan-earn”, but an archived month holds it:" in hits
    archive_page = reverse(
        "admin:core_archivedmonth_rows", args=[ArchivedMonth.objects.get(table=TABLE, month=dt.date(2036, 1, 1)).pk]
    )
    assert f'<a href="{archive_page}?q=jan-earn">2036-01</a>' in hits
    # However many months are archived (five here, the empty ones before January among them), three queries.
    assert ArchivedMonth.objects.filter(table=TABLE).count() > 3
    with CaptureQueriesContext(connection) as probes:
        holding = archived_months_holding(TABLE, "jan-earn")
    assert [record.month for record in holding] == [dt.date(2036, 1, 1)]
    assert len(probes.captured_queries) == 3
    nowhere = client.get(transactions, {"q": "never-used"}, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "No archived month holds “never-used” either." in nowhere
    live = client.get(transactions, {"q": "june-spend"}, HTTP_ACCEPT_LANGUAGE="en")
    assert live.context["cl"].result_count == 1
    assert "archived-hits" not in live.content.decode()  # found live: the archives are not read

    # There, a row of the archive is found by its id or key, and the entries of a transaction by its id.
    record = ArchivedMonth.objects.get(table=TABLE, month=dt.date(2036, 1, 1))
    url = reverse("admin:core_archivedmonth_rows", args=[record.pk])
    listed = client.get(reverse("admin:core_archivedmonth_changelist"), {"table__exact": TABLE})
    assert url in listed.content.decode()

    def found(archive: ArchivedMonth, term: str) -> list[dict[str, str]]:
        page = client.get(reverse("admin:core_archivedmonth_rows", args=[archive.pk]), {"q": term})
        assert page.status_code == 200
        return [{column: str(value) for column, value in row} for row in page.context["rows"]]

    (by_key,) = found(record, "jan-earn")
    assert (by_key["id"], by_key["kind"], by_key["points"]) == (str(earn.pk), "earn", "100")
    assert [row["idempotency_key"] for row in found(record, str(earn.pk))] == ["jan-earn"]
    entries = ArchivedMonth.objects.get(table="rewards_entry", month=dt.date(2036, 1, 1))
    assert {(row["transaction_id"], row["amount"]) for row in found(entries, f" {earn.pk} ")} == {
        (str(earn.pk), "100"),
        (str(earn.pk), "-100"),
    }
    none = client.get(url, {"q": "no-such-key"}, HTTP_ACCEPT_LANGUAGE="en")
    assert none.context["rows"] == []
    assert "No row of this archive matches." in none.content.decode()
    for clumsy in ("jan\x00earn", "jan\tearn"):
        refused = client.get(url, {"q": clumsy}, HTTP_ACCEPT_LANGUAGE="en")
        assert refused.status_code == 200
        assert "printable characters" in refused.content.decode()
    too_long = client.get(url, {"q": "x" * 201}, HTTP_ACCEPT_LANGUAGE="en")
    assert too_long.context["found"] is None
    assert "at most 200 printable characters" in too_long.content.decode()
    # An archive table that has gone is said so, not a server error.
    fetch(f"ALTER TABLE {record.archive_table} RENAME TO moved_away")
    missing = client.get(url, {"q": "jan-earn"}, HTTP_ACCEPT_LANGUAGE="en")
    assert f"The archive table {record.archive_table} is missing." in missing.content.decode()
    fetch(f"ALTER TABLE moved_away RENAME TO {record.archive_table}")
    # Archives are the alliance's: a bank's operator is told there is no such page.
    outsider = Client()
    outsider.force_login(bank_operator(MemberBankFactory()))
    assert outsider.get(url, {"q": "jan-earn"}).status_code == 404
