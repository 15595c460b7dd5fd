"""Disputes: each path (won, lost, accepted, expired, retrieval), deadlines on the PRC calendar, the money — a
settlement debit exactly once, points and promotions reversed cumulatively with the refunds — evidence refused by
content, size and number, webhooks, and two answers at once."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db.models import Sum

from core.errors import Conflict, PermissionDenied, ValidationFailed
from core.models import AuditLog
from merchants.models import Event
from payments import services
from payments.models import Dispute, DisputeEvidence, PaymentIntent, SettlementBatch, SettlementLine
from payments.services import disputes
from rewards import services as ledger
from rewards.models import Account
from tests.concurrency import run_parallel
from tests.factories import bank_operator
from tests.payments.settling import at, make_world, pay, refund

pytestmark = pytest.mark.django_db
D = dt.date
MON, TUE, WED = D(2026, 11, 23), D(2026, 11, 24), D(2026, 11, 25)
_serial = itertools.count(1)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.7\n" + b"x" * 64


@pytest.fixture
def world() -> dict[str, Any]:
    return make_world()


@pytest.fixture(autouse=True)
def private_evidence(tmp_path: Any, settings: Any) -> Any:
    settings.DISPUTE_EVIDENCE_ROOT = str(tmp_path / "private")
    return tmp_path / "private"


def open_chargeback(payment: PaymentIntent, amount: int | None = None, kind: str = "chargeback", **kw: Any) -> Dispute:
    return services.dispute_open(
        payment=payment,
        kind=kind,
        amount=amount,
        reason_code="4837",
        opened_by=Dispute.OpenedBy.CHANNEL,
        channel_reference=f"cb-{next(_serial)}",
        **kw,
    )


def settle(day: dt.date) -> None:
    services.settle("t1", day.isoformat())


def event_types(merchant: Any) -> list[str]:
    return list(
        Event.objects.filter(merchant=merchant, type__startswith="dispute.")
        .order_by("id")
        .values_list("type", flat=True)
    )


# --- deadlines ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "opened", "respond_by"),
    [
        # Wednesday 30 September, before National Day (1–7 October) and its working Saturday, 10 October.
        ("error_adjustment", D(2026, 9, 30), D(2026, 10, 10)),
        ("retrieval", D(2026, 9, 30), D(2026, 10, 13)),
        ("chargeback", D(2026, 9, 30), D(2026, 10, 20)),
        # Opened on a holiday: counted from the first working day after it.
        ("error_adjustment", D(2026, 10, 3), D(2026, 10, 12)),
        # A plain week.
        ("chargeback", MON, D(2026, 12, 7)),
    ],
)
def test_deadlines_count_working_days_on_the_prc_calendar(kind: str, opened: dt.date, respond_by: dt.date) -> None:
    assert disputes.respond_by_for(kind, at(opened, 10)) == respond_by


def test_a_dispute_opened_before_national_day_carries_its_deadline(world: dict[str, Any]) -> None:
    payment = pay(world, 10_000, D(2026, 9, 30))
    dispute = open_chargeback(payment, 4_000, opened_at=at(D(2026, 9, 30), 16))
    assert dispute.respond_by == D(2026, 10, 20)
    assert services.disputes_expire(today=D(2026, 10, 20)) == 0  # the last day is still in time
    assert services.disputes_expire(today=D(2026, 10, 21)) == 1
    dispute.refresh_from_db()
    assert dispute.status == Dispute.Status.EXPIRED


# --- opening --------------------------------------------------------------------------------------------------------


def test_a_chargeback_reserves_its_amount_and_cannot_exceed_what_is_left(world: dict[str, Any]) -> None:
    payment = pay(world, 10_000, MON)
    refund(payment, 3_000, MON)
    first = open_chargeback(payment, 5_000)
    payment.refresh_from_db()
    assert payment.amount_disputed == 5_000
    with pytest.raises(ValidationFailed) as refused:
        open_chargeback(payment, 2_001)
    assert refused.value.code == "dispute_exceeds_available"
    second = open_chargeback(payment)  # the rest: 10,000 − 3,000 refunded − 5,000 disputed
    assert second.amount == 2_000
    assert first.payment_created_at == second.payment_created_at == payment.created_at  # the payment's month
    assert first.holds_settlement
    assert second.holds_settlement
    assert event_types(world["merchant"]) == ["dispute.created", "dispute.created"]


def test_the_same_channel_notice_twice_opens_one_dispute(world: dict[str, Any]) -> None:
    payment = pay(world, 10_000, MON)
    notice = {"payment": payment, "kind": "chargeback", "amount": 1_000, "opened_by": "channel"}
    one = services.dispute_open(**notice, channel_reference="cb-same")
    again = services.dispute_open(**notice, channel_reference="cb-same")
    assert one.pk == again.pk
    payment.refresh_from_db()
    assert payment.amount_disputed == 1_000


def test_an_operator_opens_only_for_the_acquirer_or_the_sponsor(world: dict[str, Any]) -> None:
    payment = pay(world, 10_000, MON)
    with pytest.raises(PermissionDenied):
        services.dispute_open(
            payment=payment, kind="error_adjustment", amount=100, actor=bank_operator(world["issuer"])
        )
    dispute = services.dispute_open(
        payment=payment, kind="error_adjustment", amount=100, actor=bank_operator(world["sponsor"])
    )
    assert dispute.opened_by == Dispute.OpenedBy.OPERATOR
    assert dispute.opened_by_user is not None
    assert AuditLog.objects.filter(action="dispute.open", object_id=str(dispute.pk)).count() == 1


# --- the paths --------------------------------------------------------------------------------------------------


def test_won_releases_the_hold_and_the_reservation(world: dict[str, Any]) -> None:
    payment = pay(world, 10_000, MON)
    dispute = open_chargeback(payment, 4_000)
    settle(MON)
    assert not SettlementLine.objects.filter(payment=payment).exists()  # held while open
    services.dispute_outcome_record(dispute_id=dispute.pk, outcome="won")
    payment.refresh_from_db()
    assert (payment.amount_disputed, payment.amount_charged_back) == (0, 0)
    settle(TUE)
    batch = SettlementBatch.objects.get(merchant=world["merchant"], period=TUE.isoformat())
    assert list(batch.lines.values_list("kind", "amount")) == [("payment", 10_000)]
    assert batch.dispute_debits == 0
    assert event_types(world["merchant"]) == ["dispute.created", "dispute.closed"]


def test_lost_debits_the_next_settlement_exactly_once(world: dict[str, Any]) -> None:
    payment = pay(world, 10_000, MON)
    settle(MON)  # settled before the dispute: no hold
    dispute = open_chargeback(payment, 4_000)
    assert not dispute.holds_settlement
    services.dispute_outcome_record(dispute_id=dispute.pk, outcome="lost", note="cardholder's claim upheld")
    Dispute.objects.filter(pk=dispute.pk).update(closed_at=at(TUE, 9))
    pay(world, 6_000, TUE)
    settle(TUE)
    pay(world, 1_000, WED)
    settle(WED)
    lines = SettlementLine.objects.filter(kind=SettlementLine.Kind.DISPUTE)
    assert list(lines.values_list("dispute_id", "payment_id", "amount")) == [(dispute.pk, payment.pk, -4_000)]
    tuesday = SettlementBatch.objects.get(merchant=world["merchant"], period=TUE.isoformat())
    assert tuesday.dispute_debits == 4_000
    assert tuesday.net == tuesday.gross - tuesday.fee_total - 4_000
    merchant_split = tuesday.splits.filter(party="merchant").aggregate(total=Sum("amount"))["total"]
    assert merchant_split == tuesday.net * 100
    wednesday = SettlementBatch.objects.get(merchant=world["merchant"], period=WED.isoformat())
    assert wednesday.dispute_debits == 0
    settle(TUE)  # again: nothing
    assert lines.count() == 1


def test_a_dispute_line_names_its_dispute_in_the_lines_and_their_csv(world: dict[str, Any]) -> None:
    from payments import selectors

    payment = pay(world, 10_000, MON)
    settle(MON)
    dispute = open_chargeback(payment, 2_500)
    services.dispute_outcome_record(dispute_id=dispute.pk, outcome="lost")
    Dispute.objects.filter(pk=dispute.pk).update(closed_at=at(TUE, 9))
    settle(TUE)
    batch = SettlementBatch.objects.get(merchant=world["merchant"], period=TUE.isoformat())
    lines = selectors.settlement_lines_page(batch_id=batch.pk, after=None, limit=10).lines
    assert [(line.kind, line.payment, line.dispute, line.amount) for line in lines] == [
        ("dispute", payment.public_id, dispute.public_id, -2_500)
    ]
    csv_rows = "".join(selectors.settlement_lines_csv(batch_id=batch.pk)).splitlines()
    assert csv_rows[1].startswith(f"stll_1,dispute,{payment.public_id},,{dispute.public_id},,-2500,")


def test_a_held_payment_lost_settles_with_its_debit_in_the_same_batch(world: dict[str, Any]) -> None:
    payment = pay(world, 10_000, MON)
    dispute = open_chargeback(payment, 10_000)
    settle(MON)
    assert not SettlementBatch.objects.filter(merchant=world["merchant"], period=MON.isoformat()).exists()
    services.dispute_outcome_record(dispute_id=dispute.pk, outcome="lost")
    Dispute.objects.filter(pk=dispute.pk).update(closed_at=at(TUE, 9))
    pay(world, 5_000, TUE)
    settle(TUE)
    batch = SettlementBatch.objects.get(merchant=world["merchant"], period=TUE.isoformat())
    assert sorted(batch.lines.values_list("kind", "amount")) == [
        ("dispute", -10_000),
        ("payment", 5_000),
        ("payment", 10_000),
    ]


def test_accepted_costs_as_lost_and_retrieval_carries_no_money(world: dict[str, Any]) -> None:
    payment = pay(world, 10_000, MON)
    retrieval = open_chargeback(payment, None, kind="retrieval")
    assert (retrieval.amount, retrieval.holds_settlement) == (10_000, False)
    payment.refresh_from_db()
    assert payment.amount_disputed == 0
    services.dispute_outcome_record(dispute_id=retrieval.pk, outcome="lost")
    payment.refresh_from_db()
    assert payment.amount_charged_back == 0
    chargeback = open_chargeback(payment, 2_500)
    services.dispute_accept(merchant=world["merchant"], livemode=True, dispute_id=chargeback.public_id)
    chargeback.refresh_from_db()
    payment.refresh_from_db()
    assert chargeback.status == Dispute.Status.ACCEPTED
    assert chargeback.closed_at is not None
    assert (payment.amount_disputed, payment.amount_charged_back) == (2_500, 2_500)
    Dispute.objects.filter(pk__in=[retrieval.pk, chargeback.pk]).update(closed_at=at(TUE, 9))
    settle(TUE)
    assert list(SettlementLine.objects.filter(kind="dispute").values_list("dispute_id", "amount")) == [
        (chargeback.pk, -2_500)
    ]
    with pytest.raises(Conflict) as closed:
        services.dispute_accept(merchant=world["merchant"], livemode=True, dispute_id=chargeback.public_id)
    assert closed.value.code == "dispute_closed"


def test_expiry_closes_only_unanswered_disputes_past_their_day(world: dict[str, Any]) -> None:
    payment = pay(world, 10_000, MON)
    silent = open_chargeback(payment, 1_000)
    answered = open_chargeback(payment, 1_000)
    Dispute.objects.filter(pk=answered.pk).update(status="evidence_submitted", answered_at=at(TUE, 10))
    after = silent.respond_by + dt.timedelta(days=1)
    assert services.disputes_expire(today=after) == 1
    silent.refresh_from_db()
    answered.refresh_from_db()
    assert (silent.status, answered.status) == ("expired", "evidence_submitted")
    payment.refresh_from_db()
    assert payment.amount_charged_back == 1_000
    assert services.disputes_expire(today=after) == 0


# --- points and promotions, with the refunds ------------------------------------------------------------------------


def test_a_lost_chargeback_reverses_points_cumulatively_with_the_refunds(points_world: dict[str, Any]) -> None:
    world = points_world
    payment = services.payment_create(
        merchant=world["merchant"], cardholder=world["card"].cardholder, card=world["card"], amount=10_000,
        currency="CNY", idempotency_key=f"dispute-{next(_serial)}", confirm=True,
    )  # fmt: skip
    assert payment.points_earned == 100
    services.refund_create(
        merchant=world["merchant"], payment_id=payment.public_id, amount=3_333, idempotency_key=f"d-{next(_serial)}"
    )
    payment.refresh_from_db()
    assert payment.points_reversed == 33  # floor(100 × 3,333 / 10,000)
    dispute = open_chargeback(payment, 3_334)
    services.dispute_outcome_record(dispute_id=dispute.pk, outcome="lost")
    payment.refresh_from_db()
    dispute.refresh_from_db()
    assert payment.points_reversed == 66  # floor(100 × 6,667 / 10,000), not 33 + 33
    assert dispute.points_reversed == 33
    with pytest.raises(ValidationFailed):  # what was charged back is not refundable
        services.refund_create(
            merchant=world["merchant"], payment_id=payment.public_id, amount=3_334, idempotency_key=f"d-{next(_serial)}"
        )
    last = services.refund_create(
        merchant=world["merchant"], payment_id=payment.public_id, idempotency_key=f"d-{next(_serial)}"
    )
    payment.refresh_from_db()
    assert (last.amount, last.points_reversed, payment.points_reversed) == (3_333, 34, 100)


def test_a_lost_chargeback_of_spent_points_leaves_a_points_debt(points_world: dict[str, Any]) -> None:
    world = points_world
    payment = services.payment_create(
        merchant=world["merchant"], cardholder=world["card"].cardholder, card=world["card"], amount=10_000,
        currency="CNY", idempotency_key=f"dispute-{next(_serial)}", confirm=True,
    )  # fmt: skip
    wallet = ledger.wallet_account(world["card"].cardholder_id, world["program"])
    assert wallet.available == 2_100
    ledger.points_redeem(
        cardholder_id=world["card"].cardholder_id, program=world["program"], amount=2_100,
        idempotency_key=f"spend-{next(_serial)}",
    )  # fmt: skip
    dispute = open_chargeback(payment, 10_000)
    services.dispute_outcome_record(dispute_id=dispute.pk, outcome="lost")
    dispute.refresh_from_db()
    assert dispute.points_reversed == 100
    debt = Account.objects.get(owner_kind="cardholder", owner_id=world["card"].cardholder_id, purpose="debt")
    assert debt.posted == -100


# --- evidence ---------------------------------------------------------------------------------------------------


def submit(world: dict[str, Any], dispute: Dispute, *files: SimpleUploadedFile, text: str = "") -> Dispute:
    return services.dispute_evidence_submit(
        merchant=world["merchant"], livemode=True, dispute_id=dispute.public_id, text=text, files=list(files)
    )


def test_evidence_is_stored_privately_with_a_safe_name(world: dict[str, Any], private_evidence: Any) -> None:
    dispute = open_chargeback(pay(world, 10_000, MON), 1_000)
    submit(
        world,
        dispute,
        SimpleUploadedFile("../../etc/收据 1.pdf", PDF),
        SimpleUploadedFile("photo.JPG", b"\xff\xd8\xff\xe0" + b"j" * 40),
        text="Delivered on 20 November, signed for.",
    )
    dispute.refresh_from_db()
    assert dispute.status == Dispute.Status.EVIDENCE_SUBMITTED
    rows = list(DisputeEvidence.objects.filter(dispute=dispute).exclude(file=""))
    assert [(row.filename, row.content_type) for row in rows] == [
        ("收据_1.pdf", "application/pdf"),
        ("photo.JPG", "image/jpeg"),
    ]
    stored = private_evidence / rows[0].file.name
    assert stored.read_bytes() == PDF
    assert ".." not in rows[0].file.name
    assert event_types(world["merchant"]) == ["dispute.created", "dispute.updated"]


@pytest.mark.parametrize(
    ("upload", "code"),
    [
        (SimpleUploadedFile("receipt.pdf", b"just some text, named .pdf"), "file_type_not_allowed"),
        (SimpleUploadedFile("receipt.pdf", b"GIF89a" + b"\x00" * 20), "file_type_not_allowed"),
        (SimpleUploadedFile("big.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 2_000), "file_too_large"),
    ],
)
def test_evidence_is_refused_by_content_and_size_and_nothing_is_written(
    world: dict[str, Any], settings: Any, private_evidence: Any, upload: SimpleUploadedFile, code: str
) -> None:
    settings.DISPUTE_EVIDENCE_MAX_BYTES = 1_000
    dispute = open_chargeback(pay(world, 10_000, MON), 1_000)
    with pytest.raises(ValidationFailed) as refused:
        submit(world, dispute, SimpleUploadedFile("ok.png", PNG), upload, text="see attached")
    assert refused.value.code == code
    dispute.refresh_from_db()
    assert dispute.status == Dispute.Status.OPEN
    assert not DisputeEvidence.objects.exists()
    assert not private_evidence.exists() or not any(private_evidence.rglob("*.*"))


def test_a_png_named_pdf_is_taken_as_the_png_it_is(world: dict[str, Any]) -> None:
    dispute = open_chargeback(pay(world, 10_000, MON), 1_000)
    submit(world, dispute, SimpleUploadedFile("scan.pdf", PNG))
    assert DisputeEvidence.objects.get(dispute=dispute).content_type == "image/png"


def test_too_many_files_and_late_or_closed_answers_are_refused(world: dict[str, Any], settings: Any) -> None:
    settings.DISPUTE_EVIDENCE_MAX_FILES = 2
    payment = pay(world, 10_000, MON)
    dispute = open_chargeback(payment, 1_000)
    with pytest.raises(ValidationFailed) as many:
        submit(world, dispute, *(SimpleUploadedFile(f"{n}.png", PNG) for n in range(3)))
    assert many.value.code == "too_many_files"
    late = open_chargeback(payment, 1_000, opened_at=at(D(2026, 9, 30), 10))
    with pytest.raises(Conflict) as past:
        submit(world, late, text="too late")
    assert past.value.code == "deadline_passed"
    services.dispute_outcome_record(dispute_id=dispute.pk, outcome="won")
    with pytest.raises(Conflict) as closed:
        submit(world, dispute, text="after the end")
    assert closed.value.code == "dispute_closed"


def test_another_merchants_dispute_is_not_found(world: dict[str, Any]) -> None:
    from core.errors import NotFound
    from tests.factories import MerchantFactory

    dispute = open_chargeback(pay(world, 10_000, MON), 1_000)
    with pytest.raises(NotFound):
        services.dispute_accept(merchant=MerchantFactory(), livemode=True, dispute_id=dispute.public_id)


# --- two answers at once ----------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_evidence_and_acceptance_at_once_one_wins(world: dict[str, Any]) -> None:
    payment = pay(world, 10_000, MON)
    dispute = open_chargeback(payment, 4_000)

    def answer(i: int) -> str:
        if i % 2:
            return services.dispute_accept(
                merchant=world["merchant"], livemode=True, dispute_id=dispute.public_id
            ).status
        return submit(world, dispute, text=f"answer {i}").status

    results = run_parallel(4, answer)
    won = [result for result in results if isinstance(result, str)]
    refused = [result for result in results if isinstance(result, Conflict)]
    assert len(won) == 1, results
    assert len(refused) == 3, results
    dispute.refresh_from_db()
    payment.refresh_from_db()
    if dispute.status == Dispute.Status.ACCEPTED:
        assert not DisputeEvidence.objects.filter(dispute=dispute).exists()
        assert payment.amount_charged_back == 4_000
    else:
        assert dispute.status == Dispute.Status.EVIDENCE_SUBMITTED
        assert DisputeEvidence.objects.filter(dispute=dispute).count() == 1
        assert payment.amount_charged_back == 0


def test_the_expiry_job_is_a_celery_task_on_an_editable_hourly_schedule(world: dict[str, Any]) -> None:
    from django_celery_beat.models import PeriodicTask

    from core.models import JobRun
    from payments import tasks

    dispute = open_chargeback(pay(world, 10_000, MON), 1_000, opened_at=at(D(2026, 9, 30), 10))
    assert tasks.disputes_expire.delay().get() == 1
    dispute.refresh_from_db()
    assert dispute.status == Dispute.Status.EXPIRED
    assert JobRun.objects.get(job="payments.disputes_expire").status == "succeeded"
    task = PeriodicTask.objects.get(task="payments.disputes_expire")
    assert (task.interval.every, task.interval.period, task.enabled) == (1, "hours", True)


# --- the admin queue ------------------------------------------------------------------------------------------------


def _login(user: Any) -> Any:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client


def test_the_queue_and_its_evidence_belong_to_the_acquirer_and_the_sponsor(world: dict[str, Any]) -> None:
    from django.urls import reverse

    payment = pay(world, 10_000, MON, channel=world["other_channel"])  # acquired by another bank than the sponsor
    dispute = open_chargeback(payment, 1_000)
    submit(world, dispute, SimpleUploadedFile("pod.pdf", PDF), text="delivered")
    row = DisputeEvidence.objects.exclude(file="").get(dispute=dispute)
    download = reverse("admin:payments_dispute_evidence", args=[dispute.pk, row.pk])
    for bank in (world["sponsor"], world["other_acquirer"]):
        client = _login(bank_operator(bank))
        listing = client.get(reverse("admin:payments_dispute_changelist"))
        assert dispute.public_id in listing.content.decode()
        response = client.get(download)
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == PDF
        assert response["Content-Type"] == "application/pdf"
    outsider = _login(bank_operator(world["issuer"]))
    assert dispute.public_id not in outsider.get(reverse("admin:payments_dispute_changelist")).content.decode()
    assert outsider.get(download).status_code == 404
    assert _login(bank_operator(world["sponsor"])).get("/media/private/").status_code == 404


def test_an_operator_opens_a_dispute_and_records_the_outcome_in_the_admin(world: dict[str, Any]) -> None:
    from django.urls import reverse

    payment = pay(world, 10_000, MON)
    client = _login(bank_operator(world["sponsor"]))
    response = client.post(
        reverse("admin:payments_dispute_open"),
        {"payment": payment.public_id, "kind": "error_adjustment", "amount": "300"},
    )
    dispute = Dispute.objects.get(payment=payment)
    assert response.status_code == 302
    assert (dispute.kind, dispute.amount, dispute.opened_by) == ("error_adjustment", 300, "operator")
    client.post(
        reverse("admin:payments_dispute_changelist"), {"action": "record_lost", "_selected_action": [dispute.pk]}
    )
    dispute.refresh_from_db()
    assert dispute.status == Dispute.Status.LOST
    refused = client.post(
        reverse("admin:payments_dispute_open"), {"payment": payment.public_id, "kind": "chargeback", "amount": "99999"}
    )
    assert refused.status_code == 200
    assert Dispute.objects.filter(payment=payment).count() == 1


def test_the_cardholder_sees_only_their_own_payments_disputes(world: dict[str, Any]) -> None:
    from django.template.loader import render_to_string
    from django.utils import translation

    from payments.selectors import disputes_for_payments
    from tests.factories import CardholderFactory

    payment = pay(world, 10_000, MON)
    dispute = open_chargeback(payment, 2_000)
    mine = disputes_for_payments(world["card"].cardholder, [payment.public_id])
    assert [(row.kind, row.status, row.amount) for row in mine[payment.public_id]] == [("chargeback", "open", 2_000)]
    assert disputes_for_payments(CardholderFactory(), [payment.public_id]) == {}
    with translation.override("en"):
        shown = render_to_string("payments/_dispute_state.html", {"disputes": mine[payment.public_id]})
    assert "Under review" in shown
    assert "20.00" in shown
    services.dispute_outcome_record(dispute_id=dispute.pk, outcome="won")
    with translation.override("en"):  # a page reads its disputes in its own language
        closed = disputes_for_payments(world["card"].cardholder, [payment.public_id])[payment.public_id]
        shown = render_to_string("payments/_dispute_state.html", {"disputes": closed})
    assert ": won" in shown
