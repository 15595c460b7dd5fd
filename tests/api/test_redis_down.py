"""The merchant API and the documented example client with Redis down, and with the task broker down."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from django.core.wsgi import get_wsgi_application
from kombu.exceptions import OperationalError

from examples.merchant_client import Mengka, code_on_the_phone
from merchants import services as merchant_services
from merchants.authentication import ApiKeyRateThrottle
from merchants.models import WebhookDelivery
from merchants.tasks import webhook_deliver, webhooks_retry
from settings.celery import app as celery_app
from tests.api.conftest import World, idem, pay_body
from tests.api.test_webhooks import Receiver
from tests.redis_faults import no_hang

pytestmark = pytest.mark.django_db


def test_the_quickstart_pays_by_code_and_by_card_with_redis_down(
    world: World, keep_db_connection: None, redis_down: None
) -> None:
    """The README's example client: the cardholder signs in to the portal and shows a payment code, the merchant's
    till pays with it through the API, and a card token pays too. Every request passes the rate limit (open)."""
    app = httpx.WSGITransport(app=get_wsgi_application())
    client = Mengka("http://testserver/api/v1", world.api.raw_key, transport=app)
    user = world.card.cardholder.user
    user.set_password("phone-pass-1")
    user.save()
    with no_hang():
        code = code_on_the_phone("http://testserver", user.username, "phone-pass-1", transport=app)
        by_code = client.pay(12_000, code, reference="redis-down-1")
        by_card = client.pay_by_token(3_000, world.card.token)
    assert (by_code["status"], by_code["amount_captured"]) == ("succeeded", 12_000)
    assert (by_card["status"], by_card["amount_captured"]) == ("succeeded", 3_000)


def test_the_rate_limit_lets_requests_through_with_a_warning_when_redis_is_down(
    world: World, redis_down: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(ApiKeyRateThrottle, "THROTTLE_RATES", {"api_key": "2/minute"})
    with caplog.at_level(logging.WARNING, logger="core.redis_fallback"), no_hang():
        statuses = [world.api.get("payments")[0] for _ in range(4)]
        status, payment = world.api.post("payments", pay_body(world.card), key=idem())
    assert statuses == [200, 200, 200, 200]
    assert (status, payment["status"]) == (201, "succeeded")
    warnings = [record.getMessage() for record in caplog.records if "rate_limit falls back" in record.getMessage()]
    assert len(warnings) == 1
    assert "API requests are let through uncounted" in warnings[0]


@pytest.mark.django_db(transaction=True)
def test_a_payment_whose_webhook_cannot_be_queued_still_answers_and_the_job_sends_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker is down when the committed payment queues its webhook: `apply_async` raises kombu's
    OperationalError, as it does against a closed port (tests/core/test_redis_down.py). The API still answers with
    the payment, and the scheduled `merchants.webhooks_retry` sends the delivery left pending."""
    receiver = Receiver()
    try:
        merchant_services.webhook_endpoint_create(
            merchant=world.merchant, url=receiver.url, event_types=["payment.succeeded"], livemode=False
        )

        def broker_down(*args: Any, **kwargs: Any) -> None:
            raise OperationalError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

        monkeypatch.setattr(celery_app.conf, "task_always_eager", False)
        monkeypatch.setattr(webhook_deliver, "apply_async", broker_down)
        status, payment = world.api.post("payments", pay_body(world.card), key=idem())
        assert (status, payment["status"]) == (201, "succeeded")
        delivery = WebhookDelivery.objects.get()
        assert (delivery.status, delivery.attempts) == ("pending", 0)
        assert receiver.requests == []

        monkeypatch.undo()
        assert webhooks_retry() == 1
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts) == ("succeeded", 1)
        assert len(receiver.requests) == 1
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
