"""Webhook endpoints are bounded per merchant, and retries take turns across merchants."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from merchants.models import Event, WebhookDelivery, WebhookEndpoint
from merchants.services import webhook_deliveries_due, webhook_endpoint_create
from tests.api.conftest import World, idem
from tests.factories import MerchantFactory

pytestmark = pytest.mark.django_db


@override_settings(WEBHOOK_ENDPOINTS_PER_MODE=3)
def test_endpoints_per_mode_are_limited(world: World) -> None:
    for number in range(3):
        status, _ = world.api.post("webhook-endpoints", {"url": f"https://example.com/{number}"}, key=idem())
        assert status == 201
    status, body = world.api.post("webhook-endpoints", {"url": "https://example.com/more"}, key=idem())
    assert status == 422
    assert body["error"]["code"] == "endpoint_limit_reached"
    assert WebhookEndpoint.objects.filter(merchant=world.merchant).count() == 3
    # The other mode has its own room; deleting one makes room again.
    webhook_endpoint_create(merchant=world.merchant, url="https://example.com/live", event_types=[], livemode=True)
    endpoint = WebhookEndpoint.objects.filter(merchant=world.merchant, livemode=False).first()
    assert endpoint is not None
    assert world.api.raw("delete", f"webhook-endpoints/{endpoint.pk}").status_code == 200
    assert world.api.post("webhook-endpoints", {"url": "https://example.com/again"}, key=idem())[0] == 201


@pytest.mark.django_db(transaction=True)
@override_settings(WEBHOOK_ENDPOINTS_PER_MODE=2)
def test_concurrent_creates_cannot_pass_the_limit() -> None:
    merchant = MerchantFactory()

    def create(number: int) -> bool:
        try:
            webhook_endpoint_create(merchant=merchant, url=f"https://example.com/{number}", event_types=[])
            return True
        except Exception:
            return False
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=6) as pool:
        created = list(pool.map(create, range(6)))
    assert sum(created) == 2
    assert WebhookEndpoint.objects.filter(merchant=merchant).count() == 2


def _backlog(count: int) -> list[int]:
    endpoint = webhook_endpoint_create(merchant=MerchantFactory(), url="https://example.com/h", event_types=[]).endpoint
    earlier = timezone.now() - timedelta(minutes=5)
    events = Event.objects.bulk_create(
        Event(public_id=f"evt_{endpoint.pk}_{n}", merchant=endpoint.merchant, type="payment.succeeded")
        for n in range(count)
    )
    deliveries = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(
            event=event,
            event_created_at=event.created_at,
            endpoint=endpoint,
            next_attempt_at=earlier + timedelta(seconds=n),
        )
        for n, event in enumerate(events)
    )
    return [delivery.pk for delivery in deliveries]


def test_due_deliveries_take_turns_across_merchants() -> None:
    flood = _backlog(200)  # older than everyone else's
    quiet = _backlog(3)
    other = _backlog(1)
    due = [pk for pk, _ in webhook_deliveries_due(limit=10, per_merchant=50)]
    assert set(quiet) | set(other) <= set(due), "a small merchant waits behind a large one's backlog"
    assert due[:3] == sorted([flood[0], quiet[0], other[0]])
    assert len(due) == 10
    capped = [pk for pk, _ in webhook_deliveries_due(limit=500, per_merchant=20)]
    assert len([pk for pk in capped if pk in flood]) == 20
    assert flood[:20] == [pk for pk in capped if pk in flood], "each merchant's oldest go first"
