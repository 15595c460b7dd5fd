"""Nothing shown once is stored in the clear: after an API run that creates a webhook endpoint with an
Idempotency-Key (and replays it), issues keys and pays by an agreement token, no table holds any of those values."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client
from rest_framework.test import APIClient

from core.crypto import decrypt
from core.idempotency import run_idempotent
from core.logging import JsonFormatter, RedactingFilter, RequestIdFilter
from core.models import IdempotencyRecord
from merchants.models import WebhookEndpoint
from tests.api.conftest import World, idem, new_api
from tests.dbscan import database_text
from tests.factories import UserFactory, card_agreement

pytestmark = pytest.mark.django_db


def _create_endpoint(api: Any, key: str) -> Any:
    return api.raw(
        "post",
        "webhook-endpoints",
        data={"url": "https://shop.example.com/hooks", "event_types": ["payment.succeeded"]},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def test_an_api_run_leaves_no_shown_once_value_in_the_database(world: World) -> None:
    live = new_api(world.merchant, mode="live")
    key = idem()
    first = _create_endpoint(live, key)
    assert first.status_code == 201
    secret = first.json()["secret"]
    assert secret.startswith("whsec_")
    replay = _create_endpoint(live, key)
    assert (replay.status_code, replay["Idempotent-Replayed"]) == (201, "true")
    assert replay.json() == first.json()  # the same secret, from the encrypted record
    endpoint = WebhookEndpoint.objects.get()
    assert decrypt(endpoint.secret_encrypted) == secret  # the one the endpoint signs with
    record = IdempotencyRecord.objects.get(operation="webhook_endpoint.create")
    assert record.response["body"]["id"] == endpoint.pk  # what support needs is still readable...
    assert secret not in str(record.response)  # ...but not the secret

    granted = card_agreement(world.card, world.merchant)
    body = {"amount": 3_000, "currency": "CNY", "confirm": True}
    status, payment = live.post(
        "payments", {**body, "payment_method": {"type": "agreement", "token": granted.token}}, key=idem()
    )
    assert (status, payment["status"], payment["payment_method"]["type"]) == (201, "succeeded", "agreement")

    dump = database_text()
    # The scan finds what those tables do store, so an absence below means something.
    assert record.response["body"]["secret"]["__mengka_sealed__"] in dump
    assert endpoint.secret_encrypted in dump
    assert granted.agreement.token_hint in dump
    for name, value in {
        "webhook secret": secret,
        "test API key": world.api.raw_key,
        "live API key": live.raw_key,
        "agreement token": granted.token,
    }.items():
        assert value not in dump, f"the {name} is stored in the clear"


def test_named_fields_are_stored_encrypted_and_replayed_decrypted() -> None:
    outcome = {"status": 201, "body": {"id": 1, "secret": "whsec_abc"}}
    stored = run_idempotent(
        scope="t", key="k", operation="op", request={}, execute=lambda: outcome, secret_fields=("secret",)
    )
    assert stored == outcome
    record = IdempotencyRecord.objects.get()
    sealed = record.response["body"]["secret"]
    assert "whsec_abc" not in str(record.response)
    assert list(sealed) == ["__mengka_sealed__"]
    again = run_idempotent(
        scope="t", key="k", operation="op", request={}, execute=lambda: {}, secret_fields=("secret",)
    )
    assert again == outcome


def test_request_data_that_looks_sealed_is_replayed_as_it_came() -> None:
    """Only the fields a caller names are opened: a merchant's metadata shaped like a sealed value is just data."""
    outcome = {"status": 201, "body": {"metadata": {"__mengka_sealed__": "not a ciphertext"}}}
    run_idempotent(scope="t", key="k", operation="op", request={}, execute=lambda: outcome)
    assert run_idempotent(scope="t", key="k", operation="op", request={}, execute=lambda: {}) == outcome


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """The application's log lines as production writes them (same filters and formatter as settings.LOGGING)."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)


def test_an_error_while_creating_an_endpoint_logs_no_secret(
    world: World, log_output: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    def failing_encrypt(plaintext: str) -> str:
        seen.append(plaintext)
        raise ValueError(f"cannot encrypt {plaintext!r}")  # an error that quotes the secret

    monkeypatch.setattr("merchants.services.endpoints.encrypt", failing_encrypt)
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {world.api.raw_key}")
    response = client.post(
        "/api/v1/webhook-endpoints", {"url": "https://shop.example.com/hooks"}, format="json", HTTP_IDEMPOTENCY_KEY="k1"
    )
    assert response.status_code == 500
    (secret,) = seen
    logged = log_output.getvalue()
    assert "cannot encrypt" in logged  # the error was logged, with its traceback...
    assert secret not in logged  # ...and the secret masked
    assert secret not in database_text()
    assert not IdempotencyRecord.objects.exists()  # the key is free for the retry


def test_the_admin_shows_no_secret_of_an_idempotency_record_an_endpoint_or_an_agreement(world: World) -> None:
    first = _create_endpoint(world.api, "admin-k")
    secret = first.json()["secret"]
    granted = card_agreement(world.card, world.merchant)
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    record = IdempotencyRecord.objects.get()
    endpoint = WebhookEndpoint.objects.get()
    pages = {
        "record": client.get(f"/admin/core/idempotencyrecord/{record.pk}/change/"),
        "endpoint": client.get(f"/admin/merchants/webhookendpoint/{endpoint.pk}/change/"),
        "agreement": client.get(f"/admin/payments/agreement/{granted.agreement.pk}/change/"),
        "agreements": client.get("/admin/payments/agreement/"),
    }
    assert {name: page.status_code for name, page in pages.items()} == dict.fromkeys(pages, 200)
    html = {name: page.content.decode() for name, page in pages.items()}
    assert str(endpoint.pk) in html["record"]
    assert granted.agreement.token_hint in html["agreements"]
    assert not [name for name, page in html.items() if secret in page or granted.token in page]
    # An operator's change of the endpoint is logged by field name, never by value.
    changed = client.post(
        f"/admin/merchants/webhookendpoint/{endpoint.pk}/change/",
        {
            "url": endpoint.url,
            "event_types": '["payment.succeeded"]',
            "description": "desk",
            "enabled": "on",
            "livemode": "",
            "merchant": world.merchant.pk,
        },
    )
    assert changed.status_code == 302
    assert LogEntry.objects.filter(object_id=str(endpoint.pk)).exists()
    assert secret not in " ".join(str(entry.__dict__) for entry in LogEntry.objects.all())
