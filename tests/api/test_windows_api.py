"""The capture and refund windows through the merchant API: a confirm, a capture or a refund past its window is a
409 with its own code, the payment left as it was, and the key replays the refusal."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from payments.models import PaymentIntent, Refund
from tests.api.conftest import World, idem, pay_body

pytestmark = pytest.mark.django_db


def _dated(public_id: str, **times: dt.timedelta) -> None:
    """The payment as if made (`created_at`) or captured (`captured_at`) that long ago."""
    PaymentIntent.objects.filter(public_id=public_id).update(
        **{field: timezone.now() - age for field, age in times.items()}
    )


def test_a_confirm_past_the_capture_window_is_refused(world: World) -> None:
    _, payment = world.api.post("payments", pay_body(world.card, 5000, confirm=False), key=idem())
    _dated(payment["id"], created_at=dt.timedelta(days=31))
    key = idem()
    status, body = world.api.post(f"payments/{payment['id']}/confirm", key=key)
    assert status == 409
    assert body["error"]["code"] == "capture_window_closed"
    assert body["error"]["type"] == "invalid_request_error"
    assert world.api.post(f"payments/{payment['id']}/confirm", key=key) == (status, body)  # replayed
    status, now = world.api.get(f"payments/{payment['id']}")
    assert (status, now["status"]) == (200, "requires_confirmation")


def test_a_capture_past_the_capture_window_is_refused(world: World) -> None:
    _, payment = world.api.post("payments", pay_body(world.card, 5000, capture_method="manual"), key=idem())
    PaymentIntent.objects.filter(public_id=payment["id"]).update(
        authorization_expires_at=timezone.now() + dt.timedelta(days=1)
    )
    _dated(payment["id"], created_at=dt.timedelta(days=30, minutes=1))
    status, body = world.api.post(f"payments/{payment['id']}/capture", key=idem())
    assert (status, body["error"]["code"]) == (409, "capture_window_closed")
    _, now = world.api.get(f"payments/{payment['id']}")
    assert (now["status"], now["amount_captured"]) == ("requires_capture", 0)


def test_a_refund_past_the_refund_window_is_refused(world: World) -> None:
    _, payment = world.api.post("payments", pay_body(world.card, 5000), key=idem())
    _dated(payment["id"], captured_at=dt.timedelta(days=181))
    status, body = world.api.post("refunds", {"payment": payment["id"], "amount": 100}, key=idem())
    assert (status, body["error"]["code"]) == (409, "refund_window_closed")
    assert not Refund.objects.filter(intent__public_id=payment["id"]).exists()
    _, now = world.api.get(f"payments/{payment['id']}")
    assert now["amount_refunded"] == 0
