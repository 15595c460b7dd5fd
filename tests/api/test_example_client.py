"""The documented example client runs the quickstart against the real application (over WSGI, no network)."""

from __future__ import annotations

import httpx
import pytest
from django.core.wsgi import get_wsgi_application

from examples.merchant_client import Mengka, MengkaError, code_on_the_phone, grant_on_the_phone, verify_webhook
from merchants.services import webhook_signature
from payments.models import PaymentCode
from tests.api.conftest import World

pytestmark = pytest.mark.django_db


def test_quickstart_flow(world: World, keep_db_connection: None) -> None:
    app = httpx.WSGITransport(app=get_wsgi_application())
    client = Mengka("http://testserver/api/v1", world.api.raw_key, transport=app)
    user = world.card.cardholder.user
    user.set_password("phone-pass-1")
    user.save()

    code = code_on_the_phone("http://testserver", user.username, "phone-pass-1", transport=app)
    assert len(code) == 18
    assert code.isdigit()
    shown = PaymentCode.objects.get(code=code)
    assert (shown.cardholder_id, shown.card_id, shown.used_at) == (world.card.cardholder_id, world.card.pk, None)
    held = client.pay(12000, code, capture="manual", reference="example-1")
    assert held["status"] == "requires_capture"
    card = {"bank": world.issuer.code, "last4": world.card.last4}
    assert held["payment_method"] == {"type": "payment_code", "card": card}
    captured = client.capture(held["id"], 10000)
    assert (captured["status"], captured["amount_captured"]) == ("succeeded", 10000)
    refund = client.refund(held["id"], 2500, "returned")
    assert (refund["status"], refund["amount"]) == ("succeeded", 2500)
    with pytest.raises(MengkaError) as used:
        client.pay(500, code)
    assert (used.value.status, used.value.error["code"]) == (409, "payment_code_used")
    declined = client.pay(10051, code_on_the_phone("http://testserver", user.username, "phone-pass-1", transport=app))
    assert declined["status"] == "failed"
    with pytest.raises(MengkaError) as raised:
        client.refund(declined["id"])
    assert (raised.value.status, raised.value.error["code"]) == (409, "payment_unexpected_state")
    assert sum(1 for _ in client.payments(status="succeeded")) == 1
    tokened = client.pay_by_token(3000, world.card.token)  # the sandbox's way, test keys only
    assert (tokened["status"], tokened["amount_captured"]) == ("succeeded", 3000)
    with pytest.raises(RuntimeError, match="could not sign in"):
        code_on_the_phone("http://testserver", user.username, "wrong", transport=app)


def test_agreement_flow(world: World, keep_db_connection: None) -> None:
    app = httpx.WSGITransport(app=get_wsgi_application())
    client = Mengka("http://testserver/api/v1", world.api.raw_key, transport=app)
    user = world.card.cardholder.user
    user.set_password("phone-pass-1")
    user.save()

    asked = client.request_agreement(20000, 100000, "Example subscription", "https://shop.example/done")
    assert client.agreement_request(asked["id"])["status"] == "pending"
    back = grant_on_the_phone(asked["url"], user.username, "phone-pass-1", transport=app)
    assert back == f"https://shop.example/done?agreement_request={asked['id']}&status=granted"
    agreement_id = client.agreement_request(asked["id"])["agreement"]
    agreement = client.agreement(agreement_id)
    assert agreement["token"].startswith("agt_")
    assert client.agreement(agreement_id)["token"] is None
    paid = client.pay_by_agreement(2000, agreement, agreement["token"])
    assert (paid["status"], paid["payment_method"]["type"]) == ("succeeded", "agreement")
    with pytest.raises(MengkaError) as raised:
        client.pay_by_agreement(20001, agreement, agreement["token"])
    assert (raised.value.status, raised.value.error["code"]) == (422, "agreement_limit_exceeded")


def test_main_asks_for_an_agreement(world: World, keep_db_connection: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """`main` runs unattended (CI runs it against the demo): it creates a request and reads it back pending."""
    import examples.merchant_client as example

    app = httpx.WSGITransport(app=get_wsgi_application())
    user = world.card.cardholder.user
    user.set_password("phone-pass-1")
    user.save()
    monkeypatch.setenv("MENGKA_KEY", world.api.raw_key)
    monkeypatch.setenv("MENGKA_SITE", "http://testserver")
    monkeypatch.setenv("MENGKA_CARDHOLDER", user.username)
    monkeypatch.setenv("MENGKA_PASSWORD", "phone-pass-1")
    real_client = httpx.Client
    monkeypatch.setattr(example.httpx, "Client", lambda *a, **k: real_client(*a, **{**k, "transport": app}))
    example.main()
    from payments.models import AgreementRequest

    assert list(AgreementRequest.objects.values_list("status", "purpose")) == [("pending", "Example subscription")]


def test_documented_verifier_accepts_our_signature() -> None:
    import time

    body = b'{"id":"evt_1"}'
    header = webhook_signature(secret="whsec_x", timestamp=int(time.time()), body=body)
    assert verify_webhook(header, body, "whsec_x")
    assert not verify_webhook(header, body, "whsec_y")
    assert not verify_webhook(
        webhook_signature(secret="whsec_x", timestamp=int(time.time()) - 3600, body=body), body, "whsec_x"
    )
