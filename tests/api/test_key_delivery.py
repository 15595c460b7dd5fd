"""New API keys reach the merchant by a one-time link to its contact, never an operator: rotation and approval in the
admin name only the key's prefix and the masked address; the link reveals the key once (POST), then the stored copy
is wiped; a used or expired link is refused."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from core.crypto import decrypt, keyed_hash
from core.errors import Conflict
from core.models import AuditLog
from merchants import services
from merchants.models import ApiKey, KeyDelivery, MerchantApplication
from tests.api.conftest import Api, key_links
from tests.factories import MerchantFactory, bank_operator, make_application
from tests.i18n import shown

pytestmark = pytest.mark.django_db


def operator_of(bank: Any) -> Any:
    return bank_operator(bank)


@pytest.fixture
def approved(django_capture_on_commit_callbacks: Any) -> Any:
    application = make_application(contact_email="keys@shop.example")
    MerchantApplication.objects.filter(pk=application.pk).update(risk_grade="low")
    with django_capture_on_commit_callbacks(execute=True):
        result = services.merchant_application_approve(
            application=application, actor=operator_of(application.sponsor_bank)
        )
    mail.outbox.clear()
    return result


def _rotate_in_admin(merchant: Any, capture: Any) -> tuple[Any, ApiKey]:
    old = ApiKey.objects.get(merchant=merchant, mode="live")
    client = Client()
    client.force_login(operator_of(merchant.sponsor_bank))
    with capture(execute=True):
        response = client.post(
            "/admin/merchants/apikey/", {"action": "rotate", "_selected_action": [old.pk]}, follow=True
        )
    assert response.status_code == 200
    return response, old


def test_rotation_in_the_admin_sends_a_link_to_the_contact_and_shows_no_key(
    approved: Any, django_capture_on_commit_callbacks: Any
) -> None:
    response, old = _rotate_in_admin(approved.merchant, django_capture_on_commit_callbacks)
    new = ApiKey.objects.filter(merchant=approved.merchant, mode="live").exclude(pk=old.pk).get()
    (email,) = mail.outbox
    assert email.to == ["keys@shop.example"]
    (link,) = key_links(email.body)
    delivery = KeyDelivery.objects.get(api_key=new)
    assert delivery.sent_at is not None
    assert delivery.sent_to == "k***@shop.example"
    # At rest: the token only as a keyed hash, the key only encrypted.
    token = link.rsplit("/", 1)[1]
    assert delivery.token_hash == keyed_hash(token, purpose="api-key-delivery")
    raw_key = decrypt(delivery.key_encrypted)
    assert raw_key.startswith(new.prefix)
    assert raw_key not in delivery.key_encrypted
    shown_messages = [str(message) for message in response.context["messages"]]
    assert shown_messages == [
        shown(
            "New key %(new)s replaces %(old)s…; a one-time link to collect it was sent to %(to)s.",
            new=new.prefix + "…",
            old=old.prefix,
            to="k***@shop.example",
        )
    ]
    assert raw_key not in response.content.decode()
    assert not [row for row in AuditLog.objects.all() if raw_key in f"{row.before}{row.after}{row.reason}"]

    merchant_browser = Client()
    page = merchant_browser.get(link)  # opening the page (or a link preview) uses nothing up
    assert page.status_code == 200
    assert raw_key not in page.content.decode()
    assert shown("Reveal the key") in page.content.decode()
    assert merchant_browser.get(link).status_code == 200
    revealed = merchant_browser.post(link)
    assert revealed.status_code == 200
    assert raw_key in revealed.content.decode()
    assert "no-store" in revealed["Cache-Control"]
    assert Api(raw_key).get("stores")[0] == 200  # the key works against the API
    delivery.refresh_from_db()
    assert (delivery.key_encrypted, delivery.collected_at is not None) == ("", True)
    assert AuditLog.objects.filter(action="api_key.delivery_collect", object_id=str(delivery.pk)).count() == 1

    again = merchant_browser.post(link)
    assert again.status_code == 410
    assert raw_key not in again.content.decode()
    assert (
        shown("This link was used already: a key is shown only once. Ask your sponsor bank for a new key.")
        in again.content.decode()
    )
    assert merchant_browser.get(link).status_code == 410


def test_an_expired_link_is_refused_and_its_key_wiped(approved: Any, django_capture_on_commit_callbacks: Any) -> None:
    _rotate_in_admin(approved.merchant, django_capture_on_commit_callbacks)
    (link,) = key_links(mail.outbox[0].body)
    delivery = KeyDelivery.objects.get(
        collected_at=None,
        api_key__mode="live",
        merchant=approved.merchant,
        sent_at__isnull=False,
        api_key__revoked_at=None,
        api_key__expires_at=None,
    )
    KeyDelivery.objects.filter(pk=delivery.pk).update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    merchant_browser = Client()
    page = merchant_browser.get(link)
    assert page.status_code == 410
    assert shown("This link has expired. Ask your sponsor bank for a new key.") in page.content.decode()
    refused = merchant_browser.post(link)
    assert refused.status_code == 410
    assert shown("This link has expired. Ask your sponsor bank for a new key.") in refused.content.decode()
    delivery.refresh_from_db()
    assert (delivery.key_encrypted, delivery.collected_at) == ("", None)


def test_an_unknown_link_is_not_found() -> None:
    assert Client().post("/merchants/keys/not-a-real-token").status_code == 404
    assert Client().get("/merchants/keys/not-a-real-token").status_code == 404


def test_a_merchant_without_a_contact_is_not_rotated_from_the_admin() -> None:
    merchant = MerchantFactory()
    issued = services.api_key_create(merchant=merchant, mode="live")
    with pytest.raises(Conflict) as refused:
        services.api_key_rotate_and_deliver(api_key=issued.api_key, actor=operator_of(merchant.sponsor_bank))
    assert refused.value.code == "no_key_contact"
    assert list(ApiKey.objects.filter(merchant=merchant)) == [issued.api_key]
    assert ApiKey.objects.get(pk=issued.api_key.pk).expires_at is None
    assert not KeyDelivery.objects.exists()
    assert not mail.outbox


def test_the_delivery_admin_never_shows_the_token_or_the_key(approved: Any) -> None:
    delivery = approved.keys.deliveries[0]
    client = Client()
    client.force_login(operator_of(approved.merchant.sponsor_bank))
    page = client.get(f"/admin/merchants/keydelivery/{delivery.pk}/change/").content.decode()
    assert delivery.token_hash not in page
    assert delivery.key_encrypted not in page
    assert decrypt(delivery.key_encrypted) not in page
    assert client.get("/admin/merchants/keydelivery/add/").status_code == 403


def test_an_email_that_cannot_be_sent_leaves_the_delivery_unsent_and_the_rotation_committed(
    approved: Any, django_capture_on_commit_callbacks: Any, monkeypatch: Any
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError("mail server down")

    monkeypatch.setattr("merchants.services.key_deliveries.send_mail", refuse)
    old = ApiKey.objects.get(merchant=approved.merchant, mode="live")
    with django_capture_on_commit_callbacks(execute=True):
        sent = services.api_key_rotate_and_deliver(api_key=old, actor=operator_of(approved.merchant.sponsor_bank))
    (delivery,) = sent.deliveries
    delivery.refresh_from_db()
    assert delivery.sent_at is None  # the admin shows it was not sent: the operator rotates again
    assert delivery.key_encrypted
    assert not mail.outbox
