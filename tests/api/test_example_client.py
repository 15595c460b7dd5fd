"""The documented example client runs the quickstart against the real application (over WSGI, no network)."""

from __future__ import annotations

import httpx
import pytest
from django.core.wsgi import get_wsgi_application

from examples.merchant_client import Mengka, MengkaError, verify_webhook
from merchants.services import webhook_signature
from tests.api.conftest import World

pytestmark = pytest.mark.django_db


def test_quickstart_flow(world: World, keep_db_connection: None) -> None:
    client = Mengka(
        "http://testserver/api/v1", world.api.raw_key, transport=httpx.WSGITransport(app=get_wsgi_application())
    )
    held = client.pay(12000, world.card.token, capture="manual", reference="example-1")
    assert held["status"] == "requires_capture"
    captured = client.capture(held["id"], 10000)
    assert (captured["status"], captured["amount_captured"]) == ("succeeded", 10000)
    refund = client.refund(held["id"], 2500, "returned")
    assert (refund["status"], refund["amount"]) == ("succeeded", 2500)
    declined = client.pay(10051, world.card.token)
    assert declined["status"] == "failed"
    with pytest.raises(MengkaError) as raised:
        client.refund(declined["id"])
    assert (raised.value.status, raised.value.error["code"]) == (409, "payment_unexpected_state")
    assert sum(1 for _ in client.payments(status="succeeded")) == 1


def test_documented_verifier_accepts_our_signature() -> None:
    import time

    body = b'{"id":"evt_1"}'
    header = webhook_signature(secret="whsec_x", timestamp=int(time.time()), body=body)
    assert verify_webhook(header, body, "whsec_x")
    assert not verify_webhook(header, body, "whsec_y")
    assert not verify_webhook(
        webhook_signature(secret="whsec_x", timestamp=int(time.time()) - 3600, body=body), body, "whsec_x"
    )
