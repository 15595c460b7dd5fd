"""Payment attempts are partitioned by month on their intent's created_at (payments/migrations/0042, docs/scaling.md
"Partitioning by month"): an attempt lands in its intent's month whenever it is made, the database's keys that hold
the month still refuse a second attempt of one intent with one sequence or one reference, the services read an
intent's attempts (and update one) in one partition, and the daily job keeps the attempts' months too.

Each test runs in a transaction that is rolled back, DDL included, so the partitions a test makes go with it.
"""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.calendar import SHANGHAI
from core.partitions import partitions, partitions_create, partitions_maintain
from payments import services
from payments.models import PaymentAttempt, PaymentIntent
from payments.services.attempts import attempt_claim, attempt_open, attempt_record
from tests.partitioning import assert_monthly, at, explain, partition_of, payment_at, table_keys

pytestmark = pytest.mark.django_db

TABLE = "payments_paymentattempt"


def _months(year: int) -> None:
    partitions_create(TABLE, dt.date(year, 1, 1), 3)


def test_the_migration_made_a_partitioned_table_whose_keys_hold_the_intents_time() -> None:
    assert_monthly(TABLE, "intent_created_at")
    assert table_keys(TABLE) == {
        "PRIMARY KEY (id, intent_created_at)",
        "UNIQUE (intent_id, sequence, intent_created_at)",
        "UNIQUE (reference, intent_created_at)",
    }
    # The model keeps `id` and states the rules the keys keep.
    assert PaymentAttempt._meta.pk is not None
    assert PaymentAttempt._meta.pk.name == "id"
    assert PaymentAttempt._meta.get_field("reference").unique  # type: ignore[union-attr]


def test_an_attempt_lands_in_its_intents_month_whenever_it_is_made() -> None:
    _months(2020)
    intent = payment_at(at(2020, 2, 29))
    channel = intent.channel
    assert channel is not None
    with mock.patch("django.utils.timezone.now", return_value=at(2020, 3, 2)):  # confirmed in the next month
        first = attempt_open(intent, channel, sequence=1)
        second = attempt_open(intent, channel, sequence=2)
    for attempt in (first, second):
        attempt.refresh_from_db()
        assert attempt.intent_created_at == intent.created_at
        assert attempt.created_at.astimezone(SHANGHAI).month == 3
        assert partition_of(TABLE, attempt.pk) == f"{TABLE}_p202002"
    # Asia/Shanghai months: 1 March 00:30 there is still February in UTC, and is March's partition.
    late = payment_at(dt.datetime(2020, 3, 1, 0, 30, tzinfo=SHANGHAI))
    assert late.channel is not None
    assert partition_of(TABLE, attempt_open(late, late.channel, sequence=1).pk) == f"{TABLE}_p202003"
    # Without a partition for its month (a test's clock, old data) the attempt is kept in the DEFAULT partition.
    stray = payment_at(at(2020, 7))
    assert stray.channel is not None
    assert partition_of(TABLE, attempt_open(stray, stray.channel, sequence=1).pk) == f"{TABLE}_default"


def test_a_second_attempt_of_one_intent_and_sequence_or_one_reference_is_refused() -> None:
    _months(2021)
    intent = payment_at(at(2021, 2))
    channel = intent.channel
    assert channel is not None
    attempt_open(intent, channel, sequence=1)
    # PostgreSQL names the month's index that refused it (the partition's), with the key.
    duplicate = r"Key \(intent_id, sequence, intent_created_at\)"
    with pytest.raises(IntegrityError, match=duplicate), transaction.atomic():
        attempt_open(intent, channel, sequence=1)  # a retry never charges twice
    with pytest.raises(IntegrityError, match=r"Key \(reference, intent_created_at\)"), transaction.atomic():
        PaymentAttempt.objects.create(
            intent=intent, sequence=9, channel=channel, reference=f"{intent.public_id}-1", amount=1, currency="CNY",
            intent_created_at=intent.created_at,
        )  # fmt: skip
    assert PaymentAttempt.objects.of(intent).count() == 1


def _single_partition(plan: str, month: str) -> None:
    assert f"{TABLE}_p{month}" in plan, plan
    others = [p.name for p in partitions(TABLE) if p.name != f"{TABLE}_p{month}"]
    assert others
    assert not [name for name in others if name in plan], plan


def test_the_services_read_and_update_an_intents_attempts_in_its_months_partition() -> None:
    _months(2022)
    intent = payment_at(at(2022, 2))
    assert intent.channel is not None
    attempt = attempt_open(intent, intent.channel, sequence=1)  # pending, claimed by its (live) request
    PaymentIntent.objects.filter(pk=intent.pk).update(
        status=PaymentIntent.Status.PROCESSING, amount_captured=0, updated_at=timezone.now() - dt.timedelta(hours=1)
    )
    # The resolver finds the payment still processing and reads its attempts: one is open, so it waits.
    with CaptureQueriesContext(connection) as queries:
        services.attempts_resolve()
    reads = [
        query["sql"]
        for query in queries.captured_queries
        if query["sql"].startswith("SELECT") and f'FROM "{TABLE}"' in query["sql"]
        and f'"{TABLE}"."intent_id" = {intent.pk}' in query["sql"]
    ]  # fmt: skip
    assert reads, "the resolver reads the payment's attempts"
    for read in reads:
        _single_partition(explain(read), "202202")
    intent.refresh_from_db()
    assert intent.status == PaymentIntent.Status.PROCESSING
    # Claiming and recording an attempt update its row in its partition.
    PaymentAttempt.objects.filter(pk=attempt.pk).update(claimed_until=None)
    with CaptureQueriesContext(connection) as queries:
        assert attempt_claim(attempt)
        attempt.status = PaymentAttempt.Status.DECLINED
        assert attempt_record(attempt, was=PaymentAttempt.UNRESOLVED)
    updates = [query["sql"] for query in queries.captured_queries if query["sql"].startswith(f'UPDATE "{TABLE}"')]
    assert len(updates) == 2
    for update in updates:
        _single_partition(explain(update), "202202")
    attempt.refresh_from_db()
    assert (attempt.status, attempt.claimed_until) == (PaymentAttempt.Status.DECLINED, None)


def test_the_job_creates_the_attempts_months_and_moves_the_defaults_rows() -> None:
    with connection.cursor() as cursor:  # as if committed before the job: no key checks left pending
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    partitions_create(TABLE, dt.date(2040, 1, 1), 1)
    intent = payment_at(at(2040, 3))  # no partition for March yet: the DEFAULT partition holds its attempt
    assert intent.channel is not None
    attempt = attempt_open(intent, intent.channel, sequence=1)
    assert partition_of(TABLE, attempt.pk) == f"{TABLE}_default"

    result = partitions_maintain(today=dt.date(2040, 5, 10), ahead=1, archive_after=None)

    made = [name for name in result.created if name.startswith(f"{TABLE}_")]
    assert made == [f"{TABLE}_p204003", f"{TABLE}_p204005", f"{TABLE}_p204006"]
    assert partition_of(TABLE, attempt.pk) == f"{TABLE}_p204003"
    assert PaymentAttempt.objects.of(intent).get() == attempt
    assert partitions_maintain(today=dt.date(2040, 5, 10), ahead=1, archive_after=None).created == []


def test_the_job_keeps_a_month_with_an_attempt_whose_outcome_is_not_known() -> None:
    with connection.cursor() as cursor:  # as if committed before the job: no key checks left pending
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    partitions_create(TABLE, dt.date(2042, 1, 1), 1)
    intent = payment_at(at(2042, 1))
    assert intent.channel is not None
    attempt = attempt_open(intent, intent.channel, sequence=1)
    PaymentAttempt.objects.filter(pk=attempt.pk).update(status=PaymentAttempt.Status.UNKNOWN)

    # Never trust a timeout: the channel's late answer must still find its attempt.
    result = partitions_maintain(today=dt.date(2042, 6, 10), ahead=0, archive_after=1)
    assert f"{TABLE}_p204201: some of its rows are still open: an attempt's outcome is not known yet" in result.kept
    assert partition_of(TABLE, attempt.pk) == f"{TABLE}_p204201"

    PaymentAttempt.objects.filter(pk=attempt.pk).update(status=PaymentAttempt.Status.FAILED)
    again = partitions_maintain(today=dt.date(2042, 6, 10), ahead=0, archive_after=1)
    assert f"{TABLE}_archive_204201" in again.archived
    assert not PaymentAttempt.objects.filter(pk=attempt.pk).exists()
