"""The channel's side of disputes, with the in-process connector: the poll opens what a channel announces once, records
its decisions, keeps its place in the feed, and never takes an unanswered send of the merchant's answer for sent."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from merchants.models import Event
from payments import services
from payments.connectors import get_connector
from payments.connectors.base import DisputeAnswerFile
from payments.connectors.inprocess import InProcessConnector
from payments.models import Dispute, DisputeFeedCursor, PaymentAttempt, PaymentIntent
from tests.payments.settling import at, make_world, pay

pytestmark = pytest.mark.django_db
MON = dt.date(2026, 11, 23)
PDF = b"%PDF-1.7\n" + b"x" * 64


@pytest.fixture
def world(tmp_path: Any, settings: Any) -> dict[str, Any]:
    settings.DISPUTE_EVIDENCE_ROOT = str(tmp_path / "private")
    return make_world()


@pytest.fixture
def channel_side() -> InProcessConnector:
    connector = get_connector("inprocess")
    assert isinstance(connector, InProcessConnector)
    connector.clear()
    yield connector
    connector.clear()


def paid(world: dict[str, Any], amount: int = 10_000, reference: str = "att_cb1") -> PaymentIntent:
    payment = pay(world, amount, MON)
    PaymentAttempt.objects.create(
        intent=payment,
        intent_created_at=payment.created_at,
        sequence=1,
        channel=world["channel"],
        reference=reference,
        status=PaymentAttempt.Status.CAPTURED,
        amount=amount,
        currency="CNY",
    )
    return payment


def announce(side: InProcessConnector, world: dict[str, Any], **fields: Any) -> None:
    channel = world["channel"]
    values = {
        "type": "opened",
        "dispute_reference": "dsp_1",
        "payment_reference": "att_cb1",
        "kind": "chargeback",
        "amount": 4_000,
        "currency": "CNY",
        "reason_code": "4837",
        "at": at(MON, 15),
        **fields,
    }
    side.dispute_notice_add(channel.remote_id or channel.code, **values)


def poll(world: dict[str, Any]) -> services.DisputePollReport:
    return services.disputes_poll(channel=world["channel"])


def dispute_events(world: dict[str, Any]) -> list[str]:
    rows = Event.objects.filter(merchant=world["merchant"], type__startswith="dispute.").order_by("id")
    return list(rows.values_list("type", flat=True))


def test_a_channels_chargeback_opens_once_and_its_decision_closes_it(
    world: dict[str, Any], channel_side: InProcessConnector
) -> None:
    payment = paid(world)
    announce(channel_side, world)
    report = poll(world)
    assert (report.notices, report.opened, report.closed, report.ignored) == (1, 1, 0, 0)
    dispute = Dispute.objects.get()
    assert (dispute.payment_id, dispute.kind, dispute.amount, dispute.reason_code) == (
        payment.pk, "chargeback", 4_000, "4837",
    )  # fmt: skip
    assert (dispute.opened_by, dispute.channel_reference, dispute.status) == ("channel", "dsp_1", "open")
    assert dispute.created_at == at(MON, 15)  # opened when the channel says: its deadline counts from then
    assert dispute_events(world) == ["dispute.created"]
    assert poll(world).notices == 0  # the cursor moved on
    assert DisputeFeedCursor.objects.get(channel=world["channel"]).position == 1

    announce(channel_side, world, type="decided", outcome="lost")
    announce(channel_side, world, type="decided", outcome="lost")  # a notice twice changes nothing
    report = poll(world)
    assert (report.notices, report.opened, report.closed) == (2, 0, 1)
    dispute.refresh_from_db()
    assert dispute.status == Dispute.Status.LOST
    assert dispute.outcome_note == f"{world['channel'].code} notice dsp_1"
    payment.refresh_from_db()
    assert payment.amount_charged_back == 4_000
    assert dispute_events(world) == ["dispute.created", "dispute.closed"]


def test_a_decision_whose_opening_was_never_read_opens_and_closes(
    world: dict[str, Any], channel_side: InProcessConnector
) -> None:
    paid(world)
    announce(channel_side, world, type="decided", outcome="won", kind="retrieval", amount=0)
    report = poll(world)
    assert (report.opened, report.closed) == (1, 1)
    assert Dispute.objects.get().status == Dispute.Status.WON


def test_notices_that_cannot_apply_are_passed_and_the_feed_goes_on(
    world: dict[str, Any], channel_side: InProcessConnector
) -> None:
    paid(world, amount=3_000)
    announce(channel_side, world, payment_reference="att_unknown")
    announce(channel_side, world, dispute_reference="dsp_2")  # 4,000 of a 3,000 payment
    announce(channel_side, world, dispute_reference="dsp_3", amount=1_000)
    report = poll(world)
    assert (report.notices, report.opened, report.ignored) == (3, 1, 2)
    assert list(Dispute.objects.values_list("channel_reference", flat=True)) == ["dsp_3"]


def test_a_feed_that_does_not_answer_keeps_the_position(
    world: dict[str, Any], channel_side: InProcessConnector
) -> None:
    paid(world)
    announce(channel_side, world)
    channel_side.down_channels.add(world["channel"].remote_id or world["channel"].code)
    assert poll(world).notices == 0
    cursor = DisputeFeedCursor.objects.get(channel=world["channel"])
    assert (cursor.position, cursor.error != "") == (0, True)
    channel_side.down_channels.clear()
    assert poll(world).opened == 1
    cursor.refresh_from_db()
    assert (cursor.position, cursor.error) == (1, "")


def test_a_timed_out_answer_is_not_taken_for_sent_and_the_poll_sends_it_again(
    world: dict[str, Any], channel_side: InProcessConnector, django_capture_on_commit_callbacks: Any
) -> None:
    paid(world)
    announce(channel_side, world)
    poll(world)
    dispute = Dispute.objects.get()
    channel_side.dispute_fault = "accepted_timeout"  # the channel takes it, and we hear nothing
    with django_capture_on_commit_callbacks(execute=True):  # the answer is queued, and sent, on commit
        services.dispute_evidence_submit(
            merchant=world["merchant"],
            livemode=True,
            dispute_id=dispute.public_id,
            text="Delivered, signed for.",
            files=[SimpleUploadedFile("proof.pdf", PDF)],
        )
    dispute.refresh_from_db()
    assert dispute.status == Dispute.Status.EVIDENCE_SUBMITTED
    assert (dispute.answered_at, dispute.answer_error) == (None, "unknown: timeout")
    answer = channel_side.answers["dsp_1"]
    assert (answer.reference, answer.text) == (dispute.public_id, "Delivered, signed for.")
    assert answer.files == (DisputeAnswerFile("proof.pdf", "application/pdf", len(PDF), answer.files[0].sha256),)

    channel_side.dispute_fault = "timeout"
    report = poll(world)
    assert (report.answers_sent, report.answers_waiting) == (0, 1)
    channel_side.dispute_fault = None
    report = poll(world)
    assert (report.answers_sent, report.answers_waiting) == (1, 0)
    dispute.refresh_from_db()
    assert dispute.answered_at is not None
    assert dispute.answer_error == ""
    sends = [call for call in channel_side.calls if call == ("dispute_respond", dispute.public_id)]
    assert len(sends) == 3  # each under the same reference: the channel holds one answer
    assert poll(world).answers_sent == 0  # sent: never again


def test_the_poll_is_a_celery_task_on_an_editable_five_minute_schedule(
    world: dict[str, Any], channel_side: InProcessConnector
) -> None:
    from django_celery_beat.models import PeriodicTask

    from core.models import JobRun
    from payments import tasks

    paid(world)
    announce(channel_side, world)
    totals = tasks.disputes_poll.delay().get()
    assert (totals["notices"], totals["opened"]) == (1, 1)
    assert JobRun.objects.get(job="payments.disputes_poll").status == "succeeded"
    task = PeriodicTask.objects.get(task="payments.disputes_poll")
    assert (task.interval.every, task.interval.period, task.enabled) == (5, "minutes", True)
