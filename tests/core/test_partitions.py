"""Monthly partitions (core/partitions.py, core/migrations/0015_monthly_partitions.py): the owner's functions create a
registered table's months once, refuse any other name, move rows the DEFAULT partition holds for a month they create,
and detach old months to archive tables; the daily job does both and is recorded as a job run; the application role
may run them though it may not create tables; reads that name their time window touch only that month's partition.

Each test runs in a transaction that is rolled back, DDL included, so the partitions a test makes go with it.
"""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.template.defaultfilters import filesizeformat
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import translation
from psycopg2 import sql

from alliance.services.clearing import entries_sql
from core.calendar import SHANGHAI
from core.jobs import job_kind
from core.models import ArchivedMonth, JobRun
from core.partitions import (
    PARTITIONED,
    PartitionError,
    archive_tables,
    month_bounds,
    partition_detach,
    partitions,
    partitions_create,
    partitions_maintain,
)
from core.tasks import partitions_maintain_daily
from rewards import services as s
from rewards.checks import ledger_verify
from rewards.models import Entry, LedgerTransaction
from rewards.sealing import seal_pending
from tests.factories import AllianceOperatorFactory, CardholderFactory, PointsProgramFactory

pytestmark = pytest.mark.django_db


def _fetch(statement: str | sql.Composable, params: tuple[object, ...] | dict[str, object] = ()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return list(cursor.fetchall()) if cursor.description else []


def _where(entry_ids: list[int]) -> dict[int, str]:
    """The partition each entry row sits in."""
    rows = _fetch("SELECT id, tableoid::regclass::text FROM rewards_entry WHERE id = ANY(%s)", (entry_ids,))
    return {row[0]: row[1] for row in rows}


def _earn_at(when: dt.datetime, key: str) -> LedgerTransaction:
    """A points earn posted as if at `when` (the transaction's and so its entries' time)."""
    program, holder = PointsProgramFactory(), CardholderFactory()
    with mock.patch("django.utils.timezone.now", return_value=when):
        return s.points_earn(cardholder_id=holder.pk, program=program, amount=10, idempotency_key=key)


def _at(year: int, month: int, day: int = 15) -> dt.datetime:
    return dt.datetime(year, month, day, 12, tzinfo=SHANGHAI)


def _plan(queryset_or_sql: object, params: object = None) -> str:
    if isinstance(queryset_or_sql, str):
        return "\n".join(row[0] for row in _fetch("EXPLAIN " + queryset_or_sql, params))  # type: ignore[arg-type]
    return queryset_or_sql.explain()  # type: ignore[attr-defined]


def test_the_migration_made_a_partitioned_table_with_months_ahead_and_a_default() -> None:
    assert PARTITIONED == {
        "rewards_entry": "created_at",
        "rewards_ledgertransaction": "created_at",
        "payments_paymentattempt": "intent_created_at",
        "payments_routingdecision": "intent_created_at",
        "payments_feesplit": "payment_created_at",
        "payments_settlementline": "payment_created_at",
        "payments_reconciliationexception": "payment_created_at",
        "payments_disputeevidence": "dispute_payment_created_at",
        "payments_dispute": "payment_created_at",
        "payments_refund": "intent_created_at",
        "payments_paymentintent": "created_at",
        "merchants_webhookdelivery": "event_created_at",
        "merchants_event": "created_at",
    }
    assert _fetch("SELECT partstrat FROM pg_partitioned_table WHERE partrelid = 'rewards_entry'::regclass") == [("r",)]
    attached = partitions("rewards_entry")
    assert attached[-1].month is None
    assert attached[-1].name == "rewards_entry_default"
    today = dt.datetime.now(SHANGHAI).date().replace(day=1)
    months = [p.month for p in attached if p.month is not None]
    assert today in months
    assert len([m for m in months if m >= today]) >= 4
    # The database's key holds the partition column; the model keeps `id`.
    (key,) = _fetch(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'rewards_entry'::regclass AND contype = 'p'"
    )
    assert key == ("PRIMARY KEY (id, created_at)",)
    assert Entry._meta.pk is not None
    assert Entry._meta.pk.name == "id"


def test_months_are_created_once_at_shanghai_month_boundaries() -> None:
    made = partitions_create("rewards_entry", dt.date(2031, 1, 20), 3)
    assert made == ["rewards_entry_p203101", "rewards_entry_p203102", "rewards_entry_p203103"]
    assert partitions_create("rewards_entry", dt.date(2031, 1, 1), 4) == ["rewards_entry_p203104"]
    assert partitions_create("rewards_entry", dt.date(2031, 1, 1), 4) == []
    (bound,) = _fetch("SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = 'rewards_entry_p203102'")
    assert bound == ("FOR VALUES FROM ('2031-01-31 16:00:00+00') TO ('2031-02-28 16:00:00+00')",)
    assert month_bounds(dt.date(2031, 2, 9)) == (_at(2031, 2, 1).replace(hour=0), _at(2031, 3, 1).replace(hour=0))
    # A new partition gets the parent's indexes and foreign keys.
    indexes = {row[0] for row in _fetch("SELECT indexdef FROM pg_indexes WHERE tablename = 'rewards_entry_p203102'")}
    assert any("(account_id, id)" in index for index in indexes)
    assert any("(transaction_id)" in index for index in indexes)
    (fks,) = _fetch(
        "SELECT count(*) FROM pg_constraint WHERE conrelid = 'rewards_entry_p203102'::regclass AND contype = 'f'"
    )
    assert fks == (2,)


@pytest.mark.parametrize(
    "name",
    [
        "core_auditlog",
        "rewards_lot",
        "rewards_entry_p203101",
        "rewards_entry; DROP TABLE core_auditlog; --",
        'rewards_entry"; DROP TABLE core_auditlog; --',
        "REWARDS_ENTRY",
    ],
)
def test_the_functions_refuse_any_table_but_the_registered_ones(name: str) -> None:
    with pytest.raises(PartitionError):
        partitions_create(name, dt.date(2031, 1, 1), 1)
    with pytest.raises(PartitionError):
        partition_detach(name, dt.date(2031, 1, 1))
    # Called directly, the database refuses it too (an application role could call the function by hand).
    for statement, params in (
        ("SELECT * FROM mengka_partitions_create(%s, %s, 1)", (name, dt.date(2031, 1, 1))),
        ("SELECT mengka_partition_detach(%s, %s)", (name, dt.date(2031, 1, 1))),
    ):
        with pytest.raises(DatabaseError, match="is not partitioned by month"), transaction.atomic():
            _fetch(statement, params)
    assert _fetch("SELECT to_regclass('core_auditlog') IS NOT NULL") == [(True,)]
    with pytest.raises(DatabaseError, match="0 to 120 months"), transaction.atomic():
        _fetch("SELECT * FROM mengka_partitions_create('rewards_entry', '2031-01-01', 121)")


def test_rows_the_default_partition_holds_move_to_the_month_created_for_them() -> None:
    txn = _earn_at(_at(2033, 7), "partitions-default")
    outside = _earn_at(_at(2033, 8), "partitions-default-next")
    ids = list(Entry.objects.filter(transaction__in=[txn, outside]).values_list("id", flat=True))
    assert set(_where(ids).values()) == {"rewards_entry_default"}

    assert partitions_create("rewards_entry", dt.date(2033, 7, 1), 1) == ["rewards_entry_p203307"]

    where = _where(ids)
    for entry in Entry.objects.filter(transaction=txn):
        assert where[entry.pk] == "rewards_entry_p203307"
    for entry in Entry.objects.filter(transaction=outside):
        assert where[entry.pk] == "rewards_entry_default"
    assert partitions("rewards_entry")[-1].name == "rewards_entry_default"  # attached again
    assert len(ids) == Entry.objects.filter(id__in=ids).count()
    assert ledger_verify(seals=False).violations == []


def test_the_job_creates_the_coming_months_and_archives_old_ones() -> None:
    partitions_create("rewards_entry", dt.date(2034, 1, 1), 2)
    old = _earn_at(_at(2034, 1), "partitions-old")
    kept = _earn_at(_at(2034, 2), "partitions-kept")
    waiting = _earn_at(_at(2034, 3), "partitions-waiting")  # no partition for March: the DEFAULT partition holds it
    waiting_ids = list(Entry.objects.filter(transaction=waiting).values_list("id", flat=True))
    assert set(_where(waiting_ids).values()) == {"rewards_entry_default"}
    old_ids = sorted(Entry.objects.filter(transaction=old).values_list("id", flat=True))
    assert seal_pending() >= 1  # a month of the ledger goes once its transactions are sealed

    # The job runs in a transaction of its own; here the rows were written in the test's, whose deferred foreign key
    # checks are made first (PostgreSQL alters no table with checks pending: an archived month's keys are dropped).
    _fetch("SET CONSTRAINTS ALL IMMEDIATE")
    # The ledger's months are kept while the refunds of payments may reverse what they hold (months after theirs).
    result = partitions_maintain(today=dt.date(2035, 5, 10), ahead=2, archive_after=15)

    # March, for the row the DEFAULT partition held; then the current month and two ahead (April, empty, is left).
    assert "rewards_entry_p203403" in result.created
    entries = [name for name in result.created if name.startswith("rewards_entry_")]
    assert entries[-3:] == ["rewards_entry_p203505", "rewards_entry_p203506", "rewards_entry_p203507"]
    assert "rewards_entry_p203404" not in result.created
    assert set(_where(waiting_ids).values()) == {"rewards_entry_p203403"}
    assert "rewards_entry_archive_203401" in result.archived
    assert "rewards_entry_archive_203402" not in result.archived  # February is 15 months before May 2035: kept
    # The transactions' months are made (their rows moved out of the DEFAULT partition), and January's archived
    # after its entries: its lot refers to the transaction's key, which stays.
    assert {"rewards_ledgertransaction_p203401", "rewards_ledgertransaction_p203403"} <= set(result.created)
    ledger = [name for name in result.archived if name.startswith("rewards_ledgertransaction")]
    assert "rewards_ledgertransaction_archive_203401" in ledger
    assert "rewards_ledgertransaction_archive_203402" not in ledger
    assert result.archived.index("rewards_entry_archive_203401") < result.archived.index(ledger[0])
    months = {p.month for p in partitions("rewards_entry")}
    assert dt.date(2034, 1, 1) not in months
    assert dt.date(2034, 2, 1) in months
    # The archived month's rows are gone from the table and readable in the archive table.
    assert not Entry.objects.filter(transaction=old).exists()
    assert Entry.objects.filter(transaction=kept).count() == 2
    archived = _fetch("SELECT id, transaction_id FROM rewards_entry_archive_203401 ORDER BY id")
    assert [row[0] for row in archived] == old_ids
    assert {row[1] for row in archived} == {old.pk}
    # Run again: nothing left to do.
    again = partitions_maintain(today=dt.date(2035, 5, 10), ahead=2, archive_after=15)
    assert again.created == []
    assert again.archived == []


def test_an_archived_month_is_recorded_and_the_ledger_check_reads_its_entries() -> None:
    partitions_create("rewards_entry", dt.date(2034, 1, 1), 2)
    program, holder = PointsProgramFactory(), CardholderFactory()
    with mock.patch("django.utils.timezone.now", return_value=_at(2034, 1)):
        old = s.points_earn(cardholder_id=holder.pk, program=program, amount=500, idempotency_key="archived-earn")
    with mock.patch("django.utils.timezone.now", return_value=_at(2034, 2)):
        s.points_redeem(cardholder_id=holder.pk, program=program, amount=120, idempotency_key="archived-redeem")
    assert seal_pending(batch_size=10) == 1
    _fetch("SET CONSTRAINTS ALL IMMEDIATE")

    assert partition_detach("rewards_entry", dt.date(2034, 1, 1)) == "rewards_entry_archive_203401"
    record = ArchivedMonth.objects.get(table="rewards_entry")
    assert (record.month, record.archive_table) == (dt.date(2034, 1, 1), "rewards_entry_archive_203401")
    assert archive_tables("rewards_entry") == ["rewards_entry_archive_203401"]
    assert not Entry.objects.filter(transaction=old).exists()

    # The wallet's balance, the earn's zero sum, its entry count and its seal still hold: the archive is read too.
    report = ledger_verify()
    assert report.violations == []
    assert "zero-sum per transaction and unit: 2 transactions, 4 entries" in report.checked

    # An archived entry edited is caught as any entry is.
    _fetch("UPDATE rewards_entry_archive_203401 SET amount = amount + 7 WHERE amount > 0")
    edited = ledger_verify().violations
    assert any(v.startswith(f"zero-sum: transaction {old.pk} sums to 7 in ") for v in edited)
    assert any(v.startswith("cached balance: account ") for v in edited)
    assert any(v.startswith("seal chain: seal ") and "no longer matches its rows" in v for v in edited)

    # An archive dropped is named, and its entries are missing from every check that counts them.
    _fetch("DROP TABLE rewards_entry_archive_203401")
    dropped = ledger_verify().violations
    assert "archived entries: the archive table rewards_entry_archive_203401 is missing" in dropped
    assert f"entry count: transaction {old.pk} was posted with 2 entries but has 0" in dropped

    # A record naming no archive of entries is named too, and not read: the other checks still run.
    forged = 'rewards_entry"; DROP TABLE x; --'
    ArchivedMonth.objects.filter(table="rewards_entry").update(archive_table=forged)
    misnamed = ledger_verify().violations
    assert f"archived entries: {forged!r} is not the name of an archive of entries" in misnamed
    assert f"entry count: transaction {old.pk} was posted with 2 entries but has 0" in misnamed


def test_alliance_operators_see_the_archived_months_and_their_size(client) -> None:
    partitions_create("rewards_entry", dt.date(2034, 1, 1), 2)
    _earn_at(_at(2034, 1), "archived-admin")
    _fetch("SET CONSTRAINTS ALL IMMEDIATE")
    partition_detach("rewards_entry", dt.date(2034, 1, 1))
    partition_detach("rewards_entry", dt.date(2034, 2, 1))
    _fetch("DROP TABLE rewards_entry_archive_203402")
    client.force_login(AllianceOperatorFactory())

    page = client.get(reverse("admin:core_archivedmonth_changelist")).content.decode()

    size = _fetch("SELECT pg_total_relation_size('rewards_entry_archive_203401')")[0][0]
    with translation.override("zh-hans"):  # the admin's language
        shown, missing = filesizeformat(size), str(translation.gettext("missing"))
    assert "rewards_entry_archive_203401" in page
    assert shown in page
    assert "rewards_entry_archive_203402" in page
    assert missing in page


def test_a_late_row_of_an_archived_month_stays_in_the_default_partition() -> None:
    partitions_create("rewards_entry", dt.date(2034, 1, 1), 1)
    _earn_at(_at(2034, 1), "archived-first")
    _fetch("SET CONSTRAINTS ALL IMMEDIATE")
    assert partition_detach("rewards_entry", dt.date(2034, 1, 1)) == "rewards_entry_archive_203401"

    late = _earn_at(_at(2034, 1, 20), "archived-late")
    late_ids = list(Entry.objects.filter(transaction=late).values_list("id", flat=True))
    assert set(_where(late_ids).values()) == {"rewards_entry_default"}
    _fetch("SET CONSTRAINTS ALL IMMEDIATE")
    result = partitions_maintain(today=dt.date(2034, 5, 10), ahead=0, archive_after=None)
    # The archived month is not made again (its archive table's name is taken): the late rows stay where they are,
    # and the ledger still adds them up with the archive's.
    assert "rewards_entry_p203401" not in result.created
    assert set(_where(late_ids).values()) == {"rewards_entry_default"}
    assert ledger_verify(seals=False).violations == []


def test_without_an_archive_setting_the_job_never_detaches(settings) -> None:
    settings.PARTITION_ARCHIVE_AFTER_MONTHS = None
    settings.PARTITION_MONTHS_AHEAD = 1
    partitions_create("rewards_entry", dt.date(2035, 1, 1), 1)
    result = partitions_maintain(today=dt.date(2036, 1, 5))
    assert result.created == [  # every registered table's
        "rewards_entry_p203601",
        "rewards_entry_p203602",
        "payments_paymentattempt_p203601",
        "payments_paymentattempt_p203602",
        "payments_routingdecision_p203601",
        "payments_routingdecision_p203602",
        "payments_feesplit_p203601",
        "payments_feesplit_p203602",
        "payments_settlementline_p203601",
        "payments_settlementline_p203602",
        "payments_reconciliationexception_p203601",
        "payments_reconciliationexception_p203602",
        "payments_disputeevidence_p203601",
        "payments_disputeevidence_p203602",
        "payments_dispute_p203601",
        "payments_dispute_p203602",
        "payments_refund_p203601",
        "payments_refund_p203602",
        "payments_paymentintent_p203601",
        "payments_paymentintent_p203602",
        "rewards_ledgertransaction_p203601",
        "rewards_ledgertransaction_p203602",
        "merchants_webhookdelivery_p203601",
        "merchants_webhookdelivery_p203602",
        "merchants_event_p203601",
        "merchants_event_p203602",
    ]
    assert result.archived == []
    assert dt.date(2035, 1, 1) in {p.month for p in partitions("rewards_entry")}
    with pytest.raises(PartitionError):
        partitions_maintain(today=dt.date(2036, 1, 5), archive_after=0)


def test_the_daily_task_is_a_recorded_job_run(settings) -> None:
    settings.PARTITION_MONTHS_AHEAD = 14
    result = partitions_maintain_daily()
    assert result["created"], "14 months ahead reaches beyond the months the migration made"
    run = JobRun.objects.get(job="core.partitions_maintain")
    assert run.status == JobRun.Status.SUCCEEDED
    assert run.counts == {"created": len(result["created"]), "archived": 0, "kept": 0}
    assert "core.partitions_maintain" in settings.TASK_QUEUES["default"]
    kind = job_kind("core.partitions_maintain")  # listed for the alliance's operators, who may run it again
    assert kind is not None
    assert (kind.shared, kind.task) == (False, "core.partitions_maintain")


def test_the_command_runs_the_job(capsys: pytest.CaptureFixture[str], settings) -> None:
    settings.PARTITION_MONTHS_AHEAD = 15
    call_command("partitions")
    out = capsys.readouterr().out
    assert "created rewards_entry_p" in out
    assert JobRun.objects.filter(job="core.partitions_maintain", status=JobRun.Status.SUCCEEDED).exists()


def test_the_application_role_runs_the_functions_though_it_may_not_create_tables(role_name: str) -> None:
    txn = _earn_at(_at(2037, 3), "partitions-app-role")
    partitions_create("rewards_entry", dt.date(2037, 3, 1), 1)
    # Before db_roles grants it, PUBLIC may not run them.
    assert _fetch(
        "SELECT has_function_privilege('public', 'mengka_partitions_create(text, date, integer)', 'EXECUTE')"
    ) == [(False,)]
    call_command("db_roles", "--app-role", role_name)
    _fetch("SET CONSTRAINTS ALL IMMEDIATE")  # no checks pending: the detach drops the archive's key to transactions
    _fetch(sql.SQL("SET ROLE {}").format(sql.Identifier(role_name)))
    try:
        with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
            _fetch(
                "CREATE TABLE rewards_entry_p209901 PARTITION OF rewards_entry"
                " FOR VALUES FROM ('2099-01-01') TO ('2099-02-01')"
            )
        assert partitions_create("rewards_entry", dt.date(2037, 4, 1), 2) == [
            "rewards_entry_p203704",
            "rewards_entry_p203705",
        ]
        assert partition_detach("rewards_entry", dt.date(2037, 3, 1)) == "rewards_entry_archive_203703"
        # The archive stays readable by the application; the new month takes its rows.
        assert len(_fetch("SELECT id FROM rewards_entry_archive_203703 WHERE transaction_id = %s", (txn.pk,))) == 2
        later = _earn_at(_at(2037, 4), "partitions-app-role-later")
        assert set(_where(list(Entry.objects.filter(transaction=later).values_list("id", flat=True))).values()) == {
            "rewards_entry_p203704"
        }
        with pytest.raises(DatabaseError, match="is not partitioned by month"), transaction.atomic():
            _fetch("SELECT * FROM mengka_partitions_create('core_auditlog', '2037-01-01', 1)")
    finally:
        _fetch("RESET ROLE")
    assert _fetch(
        "SELECT pg_get_userbyid(relowner) = current_user FROM pg_class WHERE relname = 'rewards_entry_p203705'"
    ) == [(True,)]


def test_reads_that_name_their_time_window_touch_only_that_months_partition() -> None:
    partitions_create("rewards_entry", dt.date(2038, 1, 1), 3)
    txns = [_earn_at(_at(2038, month), f"partitions-explain-{month}") for month in (1, 2, 3)]
    february = txns[1]

    plan = _plan(Entry.objects.filter(transaction=february, created_at=february.created_at))
    assert "rewards_entry_p203802" in plan
    for other in ("rewards_entry_p203801", "rewards_entry_p203803", "rewards_entry_default"):
        assert other not in plan
    # Without the time, every partition is read: what the window saves.
    assert "rewards_entry_p203801" in _plan(Entry.objects.filter(transaction=february))

    start, end = month_bounds(dt.date(2038, 2, 1))
    plan = _plan(entries_sql(), {"start": start, "end": end, "currency": "CNY"})
    assert "rewards_entry_p203802" in plan
    for other in ("rewards_entry_p203801", "rewards_entry_p203803", "rewards_entry_default"):
        assert other not in plan

    # The reversal service reads the original's entries in their month only.
    with CaptureQueriesContext(connection) as captured:
        s.transaction_reverse(transaction_id=february.pk, amount=4, idempotency_key="partitions-explain-reverse")
    (read,) = [
        query["sql"]
        for query in captured.captured_queries
        if query["sql"].startswith("SELECT")
        and 'FROM "rewards_entry"' in query["sql"]
        and f'"rewards_entry"."transaction_id" = {february.pk}' in query["sql"]
    ]
    plan = _plan(read)
    assert "rewards_entry_p203802" in plan
    for other in ("rewards_entry_p203801", "rewards_entry_p203803", "rewards_entry_default"):
        assert other not in plan

    # The admin's month filter does the same.
    start, end = month_bounds(dt.date(2038, 3, 1))
    plan = _plan(Entry.objects.filter(created_at__gte=start, created_at__lt=end))
    assert "rewards_entry_p203803" in plan
    assert "rewards_entry_p203802" not in plan


def test_every_writer_dates_entries_at_their_transaction() -> None:
    txn = _earn_at(_at(2039, 6), "partitions-dated")
    assert {e.created_at for e in Entry.objects.filter(transaction=txn)} == {txn.created_at}
    program = PointsProgramFactory()
    holders = [CardholderFactory() for _ in range(3)]
    batch = s.points_earn_bulk(
        events=[s.EarnEvent(h.pk, program.pk, 5) for h in holders], idempotency_key="partitions-bulk"
    )
    assert {e.created_at for e in Entry.objects.filter(transaction=batch)} == {batch.created_at}
    reversal = s.transaction_reverse(transaction_id=txn.pk, amount=4, idempotency_key="partitions-reverse")
    assert reversal is not None
    assert {e.created_at for e in Entry.objects.filter(transaction=reversal)} == {reversal.created_at}
    s.points_earn(
        cardholder_id=holders[0].pk,
        program=program,
        amount=7,
        idempotency_key="partitions-old-lot",
        earned_on=dt.date(2020, 1, 1),
    )
    assert s.lots_expire(on=dt.date.today())["accounts"] >= 1
    expired = LedgerTransaction.objects.filter(kind="expire")
    assert expired.exists()
    for expiry in expired:
        assert {e.created_at for e in Entry.objects.filter(transaction=expiry)} == {expiry.created_at}
    assert ledger_verify(seals=False).violations == []
    # An entry dated otherwise is refused: its key is its transaction's (id, created_at).
    _fetch("SET CONSTRAINTS ALL IMMEDIATE")
    with pytest.raises(DatabaseError, match="rewards_entry_transaction_id_fk"), transaction.atomic():
        Entry.objects.filter(transaction=txn).update(created_at=_at(2039, 6, 16))
    # Without that key (a restored dump, a writer around it), the ledger check reports it.
    with transaction.atomic():
        _fetch("ALTER TABLE rewards_entry DROP CONSTRAINT rewards_entry_transaction_id_fk")
        Entry.objects.filter(transaction=txn).update(created_at=_at(2039, 6, 16))
        assert any(v.startswith("entry time:") for v in ledger_verify(seals=False).violations)
        transaction.set_rollback(True)
