"""A chargeback end to end against the real simulator process: the channel opens it, Mengka's poll hears of it and
tells the merchant, the merchant answers over the API, the answer reaches the channel, the channel decides it lost,
and the next settlement debits it once."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from core.calendar import SHANGHAI
from merchants.models import Event
from payments import services
from payments.models import Dispute, PaymentIntent, SettlementBatch, SettlementLine
from tests.api.conftest import new_api
from tests.factories import (
    CardFactory,
    CardProductFactory,
    ChannelFactory,
    MemberBankFactory,
    MerchantFactory,
    PointsProgramFactory,
)

pytestmark = pytest.mark.django_db
ACQ = "acq-unionpay-a"
TUE, WED = dt.date(2026, 11, 24), dt.date(2026, 11, 25)
PDF = b"%PDF-1.7\n" + b"x" * 200


@pytest.fixture
def sim(sim: Any, settings: Any, tmp_path: Any) -> Any:
    settings.DISPUTE_EVIDENCE_ROOT = str(tmp_path / "private")
    return sim


def at(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=SHANGHAI)


def test_a_chargeback_from_the_channel_to_the_merchants_settlement(
    sim: Any, django_capture_on_commit_callbacks: Any
) -> None:
    issuer, acquirer = MemberBankFactory(), MemberBankFactory()
    PointsProgramFactory(bank=issuer)
    card = CardFactory(product=CardProductFactory(bank=issuer, earning_rates={"other": "1"}))
    merchant = MerchantFactory(sponsor_bank=acquirer, spend_category="other")
    channel = ChannelFactory(code="unionpay-a", remote_id=ACQ, acquirer=acquirer, connector="simulator")
    payment = services.payment_create(
        merchant=merchant, cardholder=card.cardholder, card=card, amount=10_000, currency="CNY",
        idempotency_key="e2e-dispute", confirm=True,
    )  # fmt: skip
    assert payment.status == "succeeded"
    # Captured on a Tuesday gone by, so that its settlement period is over.
    PaymentIntent.objects.filter(pk=payment.pk).update(business_date=TUE, captured_at=at(TUE, 8), created_at=at(TUE, 8))
    sim.set_faults(ACQ, dispute_decision_ms=0)  # the channel decides as soon as it has the answer

    # The channel opens a chargeback; Mengka's poll hears of it and tells the merchant.
    reference = f"{payment.public_id}-1"
    opened = sim.open_dispute(channel=ACQ, reference=reference, kind="chargeback", amount=4_000, reason_code="4837",
                              outcome="lost")  # fmt: skip
    report = services.disputes_poll(channel=channel)
    assert (report.notices, report.opened) == (1, 1)
    dispute = Dispute.objects.get(payment=payment)
    assert (dispute.status, dispute.kind, dispute.amount, dispute.channel_reference, dispute.reason_code) == (
        "open", "chargeback", 4_000, opened["id"], "4837",
    )  # fmt: skip
    created = Event.objects.filter(merchant=merchant, type="dispute.created")
    assert [event.object_id for event in created] == [dispute.public_id]
    assert services.disputes_poll(channel=channel).notices == 0  # heard once

    # The merchant answers over the API; the answer (text and the file's metadata) reaches the channel.
    api = new_api(merchant, mode="live")
    with django_capture_on_commit_callbacks(execute=True):
        response = api.raw(
            "post",
            f"disputes/{dispute.public_id}/evidence",
            data={"text": "Delivered and signed for.", "files": [SimpleUploadedFile("pod.pdf", PDF)]},
            format="multipart",
        )
    assert (response.status_code, response.json()["status"]) == (200, "evidence_submitted")
    dispute.refresh_from_db()
    assert dispute.answered_at is not None
    at_channel = sim.dispute(opened["id"])
    assert at_channel["response"]["reference"] == dispute.public_id
    assert at_channel["response"]["text"] == "Delivered and signed for."
    assert [(f["name"], f["content_type"], f["size"]) for f in at_channel["response"]["files"]] == [
        ("pod.pdf", "application/pdf", len(PDF))
    ]
    assert at_channel["state"] == "lost"

    # The channel decided it lost; the next poll records it, with its money.
    report = services.disputes_poll(channel=channel)
    assert report.closed == 1
    dispute.refresh_from_db()
    assert dispute.status == Dispute.Status.LOST
    payment.refresh_from_db()
    assert (payment.amount_charged_back, payment.points_reversed) == (4_000, 40)
    assert Event.objects.filter(merchant=merchant, type="dispute.closed").count() == 1

    # Settled: the payment (held while the dispute was open) and the debit beside it, once.
    Dispute.objects.filter(pk=dispute.pk).update(closed_at=at(TUE, 9))  # lost before Tuesday's cut-off
    services.settle("t1", TUE.isoformat())
    services.settle("t1", TUE.isoformat())
    services.settle("t1", WED.isoformat())
    batch = SettlementBatch.objects.get(merchant=merchant, period=TUE.isoformat())
    assert sorted(batch.lines.values_list("kind", "amount")) == [("dispute", -4_000), ("payment", 10_000)]
    assert batch.dispute_debits == 4_000
    assert SettlementLine.objects.filter(kind="dispute", dispute=dispute).count() == 1
    assert services.disputes_poll(channel=channel).notices == 0
