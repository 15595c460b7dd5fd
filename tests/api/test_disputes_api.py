"""The disputes API: list with filters, retrieve, evidence over multipart with its refusals, accept, idempotent POSTs,
another merchant's dispute 404, and the webhook events."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from merchants.models import Event
from payments import services
from payments.models import Dispute, PaymentIntent
from tests.api.conftest import Api, World, idem, pay_body

pytestmark = pytest.mark.django_db
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@pytest.fixture(autouse=True)
def private_evidence(tmp_path: Any, settings: Any) -> None:
    settings.DISPUTE_EVIDENCE_ROOT = str(tmp_path / "private")


def paid(world: World, amount: int = 10_000) -> PaymentIntent:
    status, body = world.api.post("payments", pay_body(world.card, amount), key=idem())
    assert (status, body["status"]) == (201, "succeeded")
    return PaymentIntent.objects.get(public_id=body["id"])


def dispute(world: World, kind: str = "chargeback", amount: int | None = 4_000) -> Dispute:
    return services.dispute_open(payment=paid(world), kind=kind, amount=amount, opened_by="channel")


def evidence(api: Api, dispute_id: str, key: str | None = None, **data: Any) -> tuple[int, Any]:
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    response = api.raw("post", f"disputes/{dispute_id}/evidence", data=data, format="multipart", **headers)
    return response.status_code, response.json()


def test_list_filters_and_retrieve(world: World) -> None:
    chargeback = dispute(world)
    retrieval = dispute(world, kind="retrieval", amount=None)
    status, body = world.api.get("disputes")
    assert status == 200
    assert [row["id"] for row in body["data"]] == [retrieval.public_id, chargeback.public_id]
    status, body = world.api.get("disputes", {"kind": "chargeback"})
    assert [row["id"] for row in body["data"]] == [chargeback.public_id]
    status, body = world.api.get("disputes", {"status": "won"})
    assert body["data"] == []
    status, body = world.api.get("disputes", {"status": "nope"})
    assert (status, body["error"]["param"]) == (400, "status")
    status, body = world.api.get(f"disputes/{chargeback.public_id}")
    assert status == 200
    assert {key: body[key] for key in ("object", "kind", "amount", "status", "payment")} == {
        "object": "dispute",
        "kind": "chargeback",
        "amount": 4_000,
        "status": "open",
        "payment": chargeback.payment.public_id,
    }
    assert body["respond_by"] == chargeback.respond_by.isoformat()


def test_another_merchants_dispute_is_404(world: World, other: World) -> None:
    mine = dispute(world)
    for status, body in (
        other.api.get(f"disputes/{mine.public_id}"),
        other.api.post(f"disputes/{mine.public_id}/accept", key=idem()),
        evidence(other.api, mine.public_id, text="not mine"),
    ):
        assert (status, body["error"]["code"]) == (404, "resource_missing")
    assert other.api.get("disputes")[1]["data"] == []


def test_evidence_over_multipart_and_its_refusals(world: World, settings: Any) -> None:
    settings.DISPUTE_EVIDENCE_MAX_BYTES = 1_000
    made = dispute(world)
    status, body = evidence(world.api, made.public_id, files=[SimpleUploadedFile("a.pdf", b"plain text")])
    assert (status, body["error"]["code"], body["error"]["param"]) == (422, "file_type_not_allowed", "files")
    big = SimpleUploadedFile("big.png", PNG + b"\x00" * 2_000)
    status, body = evidence(world.api, made.public_id, files=[big])
    assert (status, body["error"]["code"]) == (422, "file_too_large")
    status, body = evidence(world.api, made.public_id, colour="blue")
    assert (status, body["error"]["param"]) == (400, "colour")
    key = idem()
    status, body = evidence(
        world.api, made.public_id, key=key, text="Signed for.", files=[SimpleUploadedFile("pod.png", PNG)]
    )
    assert (status, body["status"]) == (200, "evidence_submitted")
    assert body["evidence"]["text"] == "Signed for."
    assert [f["name"] for f in body["evidence"]["files"]] == ["pod.png"]
    replay = world.api.raw(
        "post", f"disputes/{made.public_id}/evidence", data={"text": "Signed for.",
        "files": [SimpleUploadedFile("pod.png", PNG)]}, format="multipart", HTTP_IDEMPOTENCY_KEY=key,
    )  # fmt: skip
    assert (replay.status_code, replay["Idempotent-Replayed"]) == (200, "true")
    status, body = evidence(world.api, made.public_id, text="again")
    assert (status, body["error"]["code"]) == (409, "evidence_already_submitted")  # one answer per dispute


def test_accept_is_idempotent_and_closes_with_its_events(world: World) -> None:
    made = dispute(world)
    key = idem()
    status, body = world.api.post(f"disputes/{made.public_id}/accept", key=key)
    assert (status, body["status"]) == (200, "accepted")
    assert body["closed"] is not None
    again = world.api.client.post(
        f"/api/v1/disputes/{made.public_id}/accept", {}, format="json", HTTP_IDEMPOTENCY_KEY=key
    )
    assert (again.status_code, again["Idempotent-Replayed"]) == (200, "true")
    status, body = world.api.post(f"disputes/{made.public_id}/accept", key=idem())
    assert (status, body["error"]["code"]) == (409, "dispute_closed")
    events = list(Event.objects.filter(merchant=world.merchant, type__startswith="dispute.").order_by("id"))
    assert [(event.type, event.payload["status"]) for event in events] == [
        ("dispute.created", "open"),
        ("dispute.closed", "accepted"),
    ]
    assert events[0].livemode is False  # a test key's payment: a test-mode dispute


def test_bodies_a_schema_fuzzer_sends_are_answered_not_crashed(world: World) -> None:
    """Once a 500: a POST without a body reaches the view as an empty dict, not a form."""
    made = dispute(world)
    path = f"/api/v1/disputes/{made.public_id}/evidence"
    empty = world.api.client.post(path)
    assert (empty.status_code, empty.json()["error"]["code"]) == (422, "evidence_required")
    form = (  # `text` "0" and `files` an empty list: an empty field of that name
        b'--x\r\nContent-Disposition: form-data; name="text"\r\n\r\n0\r\n'
        b'--x\r\nContent-Disposition: form-data; name="files"\r\n\r\n\r\n--x--\r\n'
    )
    answered = world.api.client.post(path, data=form, content_type="multipart/form-data; boundary=x")
    assert (answered.status_code, answered.json()["status"]) == (200, "evidence_submitted")
    assert list(made.evidence.values_list("text", "filename")) == [("0", "")]
