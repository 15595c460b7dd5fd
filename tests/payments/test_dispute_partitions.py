"""Disputes and their evidence are partitioned by month on their payment's created_at (payments/migrations/0055,
docs/scaling.md "Partitioning by month"): a dispute lands in its payment's month and its evidence in the dispute's,
the database's keys that hold the month still refuse a second dispute for one channel reference or public id, a
re-dated payment takes its disputes and their evidence to its new month, the reads that know the payment read its
month, and the daily job keeps a month with a dispute not closed yet (or lost and not debited yet) and archives a
closed one's, evidence first.

Each test runs in a transaction that is rolled back, DDL included, so the partitions a test makes go with it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection, transaction
from psycopg2 import sql

from core.partitions import (
    PARTITIONED,
    WRITTEN_FOR_DAYS,
    partitions,
    partitions_create,
    partitions_maintain,
)
from payments import services
from payments.models import Dispute, DisputeEvidence, PaymentIntent
from payments.services.disputes import _evidence_of
from payments.services.settlement import _every_line, _held_fragments, _tables
from payments.windows import REFUND_SPAN_DAYS, RELEASED_HOLD, RELEASED_HOLD_DAYS
from tests.partitioning import (
    assert_monthly,
    at,
    explain,
    fetch,
    partition_of,
    payment_at,
    referring_keys,
    refused,
    table_keys,
)

pytestmark = pytest.mark.django_db

TABLE = "payments_dispute"
EVIDENCE = "payments_disputeevidence"


@pytest.fixture(autouse=True)
def private_evidence(tmp_path: Any, settings: Any) -> Any:
    settings.DISPUTE_EVIDENCE_ROOT = str(tmp_path / "private")
    return tmp_path / "private"


def _months(first: dt.date, months: int) -> None:
    for table in ("payments_paymentintent", TABLE, EVIDENCE):
        partitions_create(table, first, months)


def _open(payment: PaymentIntent, reference: str = "", **fields: Any) -> Dispute:
    """A dispute written as the tests' factory writes one (the services' checks aside)."""
    return Dispute.objects.create(
        payment=payment, payment_created_at=payment.created_at, merchant=payment.merchant, channel=payment.channel,
        kind="chargeback", amount=500, currency="CNY", opened_by="channel", respond_by=dt.date(2026, 3, 16),
        channel_reference=reference, **fields,
    )  # fmt: skip


def _answered(payment: PaymentIntent, reference: str) -> Dispute:
    """A chargeback opened by the channel and answered by the merchant with a text, through the services."""
    dispute = services.dispute_open(
        payment=payment, kind="chargeback", amount=100, opened_by=Dispute.OpenedBy.CHANNEL, channel_reference=reference
    )
    return services.dispute_evidence_submit(
        merchant=payment.merchant, livemode=payment.livemode, dispute_id=dispute.public_id, text="Delivered."
    )


def _keys_checked_now() -> None:
    """As if committed before the job: no key checks left pending."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def _archived_in_2030(archived: list[str]) -> list[str]:
    """The disputes' and evidence's months of 2030 among those archived (the empty months before them go too)."""
    return [name for name in archived if name.startswith(TABLE) and "_archive_2030" in name]


def _single_partition(table: str, plan: str, month: str) -> None:
    assert f"{table}_p{month}" in plan, plan
    others = [p.name for p in partitions(table) if p.name != f"{table}_p{month}"]
    assert others
    assert not [name for name in others if name in plan], plan


def test_the_migration_made_both_tables_monthly_with_keys_holding_the_payments_time() -> None:
    assert_monthly(TABLE, "payment_created_at")
    assert_monthly(EVIDENCE, "dispute_payment_created_at")
    # Evidence before disputes, disputes (and the lines naming them) before refunds and payments.
    order = list(PARTITIONED)
    assert order.index("payments_settlementline") < order.index(EVIDENCE) < order.index(TABLE)
    assert order.index(TABLE) < order.index("payments_refund") < order.index("payments_paymentintent")
    assert table_keys(TABLE) == {"PRIMARY KEY (id, payment_created_at)", "UNIQUE (public_id, payment_created_at)"}
    assert fetch(
        "SELECT regexp_replace(indexdef, '^.* USING btree ', '') FROM pg_indexes"
        " WHERE tablename = %s AND indexname = 'dispute_channel_reference_once'",
        (TABLE,),
    ) == [("(channel_id, channel_reference, payment_created_at) WHERE (NOT ((channel_reference)::text = ''::text))",)]
    assert table_keys(EVIDENCE) == {"PRIMARY KEY (id, dispute_payment_created_at)"}
    # The lines' key to the dispute is kept; the evidence's cascades, as the dispute's own key to its payment does.
    assert referring_keys(TABLE) == [
        (
            EVIDENCE,
            "FOREIGN KEY (dispute_id, dispute_payment_created_at) REFERENCES payments_dispute(id, payment_created_at)"
            " ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED",
        ),
        (
            "payments_settlementline",
            "FOREIGN KEY (dispute_id, payment_created_at) REFERENCES payments_dispute(id, payment_created_at)"
            " DEFERRABLE INITIALLY DEFERRED",
        ),
    ]
    assert fetch(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'payments_dispute_payment_fk'"
        " AND conparentid = 0"
    ) == [
        (
            "FOREIGN KEY (payment_id, payment_created_at) REFERENCES payments_paymentintent(id, created_at)"
            " ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED",
        )
    ]
    # The models keep `id` and state the rules the keys keep.
    assert Dispute._meta.pk is not None
    assert Dispute._meta.pk.name == "id"
    assert DisputeEvidence._meta.pk is not None
    assert DisputeEvidence._meta.pk.name == "id"
    # Kept while disputes may still be opened (as long as a refund), their evidence a deadline more.
    assert WRITTEN_FOR_DAYS[TABLE] == REFUND_SPAN_DAYS
    assert WRITTEN_FOR_DAYS[EVIDENCE] > REFUND_SPAN_DAYS


def test_a_dispute_lands_in_its_payments_month_and_its_evidence_in_the_disputes() -> None:
    _months(dt.date(2020, 1, 1), 3)
    payment = payment_at(at(2020, 2, 29))
    dispute = _answered(payment, "month-1")  # opened and answered now, years after the payment
    assert dispute.payment_created_at == payment.created_at
    assert partition_of(TABLE, dispute.pk) == f"{TABLE}_p202002"
    (evidence,) = DisputeEvidence.objects.filter(dispute=dispute)
    assert evidence.dispute_payment_created_at == payment.created_at
    assert partition_of(EVIDENCE, evidence.pk) == f"{EVIDENCE}_p202002"
    # Evidence written with another month is refused by its key to the dispute.
    refused(
        lambda: DisputeEvidence.objects.create(
            dispute=dispute, dispute_payment_created_at=at(2020, 3), text="x", submitted_by="t"
        ),
        "payments_disputeevidence_dispute_fk",
    )


def test_a_second_dispute_for_one_channel_reference_or_public_id_is_still_refused() -> None:
    _months(dt.date(2021, 1, 1), 3)
    payment = payment_at(at(2021, 2))
    first = _open(payment, "ref-1")
    refused(lambda: _open(payment, "ref-1"), r"Key \(channel_id, channel_reference, payment_created_at\)")
    refused(lambda: _open(payment, "ref-2", public_id=first.public_id), r"Key \(public_id, payment_created_at\)")
    _open(payment, "ref-2")
    _open(payment)  # without a reference: as many as the money allows
    _open(payment)
    assert Dispute.objects.filter(payment=payment, payment_created_at=payment.created_at).count() == 4
    # The channel's notice again returns the dispute it opened, nothing written.
    again = services.dispute_open(
        payment=payment, kind="chargeback", amount=100, opened_by=Dispute.OpenedBy.CHANNEL, channel_reference="ref-1"
    )
    assert again == first


def test_a_redated_payment_takes_its_disputes_and_their_evidence_to_its_new_month() -> None:
    """As the demo dates its history back: the keys cascade, and the rows move partitions."""
    _months(dt.date(2022, 1, 1), 3)
    payment = payment_at(at(2022, 1, 20))
    dispute = _answered(payment, "redate-1")
    back = at(2022, 3, 5)
    with transaction.atomic():  # its business date with it, as the demo's, within the capture window
        PaymentIntent.objects.filter(pk=payment.pk).update(created_at=back, business_date=back.date())
    _keys_checked_now()
    dispute.refresh_from_db()
    assert dispute.payment_created_at == back
    assert partition_of(TABLE, dispute.pk) == f"{TABLE}_p202203"
    (evidence,) = DisputeEvidence.objects.filter(dispute=dispute)
    assert evidence.dispute_payment_created_at == back
    assert partition_of(EVIDENCE, evidence.pk) == f"{EVIDENCE}_p202203"


def test_the_reads_that_know_the_payment_or_the_dispute_read_its_months_partition() -> None:
    _months(dt.date(2023, 1, 1), 3)
    payment = payment_at(at(2023, 2))
    dispute = _answered(payment, "read-1")
    # The channel's notice finds its dispute by payment and reference; the demo by payment.
    by_payment = Dispute.objects.filter(
        payment=payment, payment_created_at=payment.created_at, channel_reference="read-1"
    )
    _single_partition(TABLE, by_payment.explain(), "202302")
    # The answer sent to the channel, and the count of files already sent, read the dispute's evidence.
    _single_partition(EVIDENCE, _evidence_of(dispute).explain(), "202302")
    # Settlement's hold: an open dispute of the payment, probed in its month (the chunk's and the candidates' test).
    fragments = _held_fragments(_tables(), _every_line())
    with connection.cursor() as cursor:
        hold = sql.SQL("SELECT 1 FROM payments_paymentintent p WHERE p.id = %s AND p.created_at = %s AND {}").format(
            fragments["payment_not_held"]
        )
        statement = cursor.mogrify(hold, (payment.pk, payment.created_at)).decode()
    hold = explain(statement)
    _single_partition(TABLE, hold, "202302")


def test_the_job_keeps_a_month_with_an_open_dispute_and_archives_a_closed_ones_evidence_first() -> None:
    _keys_checked_now()
    _months(dt.date(2030, 1, 1), 2)
    still_open = _answered(payment_at(at(2030, 1)), "job-open")
    closed = _answered(payment_at(at(2030, 2)), "job-closed")
    services.dispute_outcome_record(dispute_id=closed.pk, outcome="won")
    _keys_checked_now()

    # Well past the refund window and a deadline, so that no rule keeps the months for a row yet to come.
    result = partitions_maintain(today=dt.date(2031, 6, 10), ahead=0, archive_after=3)

    # The channel's decision on the open one must still find it, and its answer be sent again with its evidence.
    assert f"{TABLE}_p203001: some of its rows are still open: a dispute is not decided yet" in result.kept
    evidence_kept = "some of its rows are still open: it is the evidence of a dispute not decided yet"
    assert f"{EVIDENCE}_p203001: {evidence_kept}" in result.kept
    assert partition_of(TABLE, still_open.pk) == f"{TABLE}_p203001"
    assert _evidence_of(still_open).count() == 1
    # The closed one's month goes, evidence first (it refers to the dispute), then its payments'; the open one's
    # payments stay, referred to.
    assert _archived_in_2030(result.archived) == [f"{EVIDENCE}_archive_203002", f"{TABLE}_archive_203002"]
    assert not Dispute.objects.filter(pk=closed.pk).exists()
    assert fetch(f"SELECT count(*) FROM {EVIDENCE}_archive_203002") == [(1,)]
    assert fetch(f"SELECT status FROM {TABLE}_archive_203002") == [("won",)]
    payments = "payments_paymentintent_archive_203002"
    assert result.archived.index(f"{TABLE}_archive_203002") < result.archived.index(payments)
    assert not PaymentIntent.objects.filter(pk=closed.payment_id).exists()
    assert "payments_paymentintent_p203001: rows of payments_dispute refer to it" in result.kept
    assert PaymentIntent.objects.filter(pk=still_open.payment_id).exists()

    # Lost: its month stays until the merchant's next settlement has debited it (within 30 days of the job's day, not
    # of the database's clock), its evidence goes.
    Dispute.objects.filter(pk=still_open.pk).update(status="lost", closed_at=at(2031, 6, 1))
    lost = partitions_maintain(today=dt.date(2031, 6, 10), ahead=0, archive_after=3)
    lost_kept = "some of its rows are still open: a dispute lost in the last 30 days is not debited yet"
    assert f"{TABLE}_p203001: {lost_kept}" in lost.kept
    assert _archived_in_2030(lost.archived) == [f"{EVIDENCE}_archive_203001"]
    # Closed longer ago than that, its debit no longer keeps the month; but the dispute held its payment from
    # settlement, and the merchant's next batch may take it, from its month, for RELEASED_HOLD_DAYS after it closed.
    assert still_open.holds_settlement
    Dispute.objects.filter(pk=still_open.pk).update(closed_at=at(2031, 5, 10))
    held = partitions_maintain(today=dt.date(2031, 6, 10), ahead=0, archive_after=3)
    assert f"{TABLE}_p203001: some of its rows are still open: {RELEASED_HOLD}" in held.kept
    assert _archived_in_2030(held.archived) == []
    # Closed longer ago than that, the month goes too.
    Dispute.objects.filter(pk=still_open.pk).update(
        closed_at=at(2031, 6, 10) - dt.timedelta(days=RELEASED_HOLD_DAYS + 1)
    )
    again = partitions_maintain(today=dt.date(2031, 6, 10), ahead=0, archive_after=3)
    assert _archived_in_2030(again.archived) == [f"{TABLE}_archive_203001"]
