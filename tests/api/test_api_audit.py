"""What a merchant does through the API is audited with its API key as the actor, never as the system."""

from __future__ import annotations

import pytest

from core.audit import SYSTEM_ACTOR, audit_record
from core.models import AuditLog
from merchants.models import ApiKey, Store, WebhookEndpoint
from tests.api.conftest import Api, World, idem, new_api, pay_body

pytestmark = pytest.mark.django_db


def _key_of(api: Api) -> ApiKey:
    return ApiKey.objects.get(prefix=api.raw_key[:12])


def _label(api: Api, world: World) -> str:
    key = _key_of(api)
    return f"api_key #{key.pk} {key.prefix}… ({world.merchant.code})"


def test_store_creation_is_audited_with_the_key_as_actor(world: World) -> None:
    response = world.api.client.post(
        "/api/v1/stores", {"code": "SH-1", "name": "Nanjing Road"}, format="json", HTTP_IDEMPOTENCY_KEY=idem()
    )
    assert response.status_code == 201
    entry = AuditLog.objects.get(action="store.create")
    key = _key_of(world.api)
    assert entry.actor_label == f"api_key #{key.pk} {key.prefix}… ({world.merchant.code})"
    assert key.prefix.startswith("sk_test_")
    assert entry.actor_id is None  # not a user
    assert (entry.object_type, entry.object_id) == ("merchants.store", str(Store.objects.get(code="SH-1").pk))
    assert entry.bank_id == world.merchant.sponsor_bank_id  # the sponsor bank's operators see it
    assert entry.request_id == response["Request-Id"]


def test_webhook_endpoint_changes_are_audited_with_the_key_as_actor(world: World) -> None:
    live = new_api(world.merchant, mode="live")
    _, endpoint = live.post("webhook-endpoints", {"url": "https://shop.example.com/h"}, key=idem())
    live.post(f"webhook-endpoints/{endpoint['id']}", {"enabled": False}, key=idem())
    assert live.raw("delete", f"webhook-endpoints/{endpoint['id']}").status_code == 200
    assert not WebhookEndpoint.objects.exists()
    entries = AuditLog.objects.filter(action__startswith="webhook_endpoint.").order_by("id")
    assert [entry.action for entry in entries] == [
        "webhook_endpoint.create",
        "webhook_endpoint.update",
        "webhook_endpoint.delete",
    ]
    assert {entry.actor_label for entry in entries} == {_label(live, world)}
    assert _key_of(live).prefix.startswith("sk_live_")
    assert {entry.object_id for entry in entries} == {str(endpoint["id"])}


def test_nothing_done_through_the_api_is_audited_as_the_system(world: World) -> None:
    before = AuditLog.objects.count()
    _, held = world.api.post("payments", pay_body(world.card, 3000, capture_method="manual"), key=idem())
    world.api.post(f"payments/{held['id']}/capture", {"amount": 2000}, key=idem())
    world.api.post("refunds", {"payment": held["id"], "amount": 500}, key=idem())
    _, other = world.api.post("payments", pay_body(world.card, 1000, capture_method="manual"), key=idem())
    world.api.post(f"payments/{other['id']}/cancel", key=idem())
    world.api.post("stores", {"code": "S9", "name": "Nine"}, key=idem())
    _, endpoint = world.api.post("webhook-endpoints", {"url": "https://shop.example.com/h"}, key=idem())
    world.api.post(f"webhook-endpoints/{endpoint['id']}", {"description": "orders"}, key=idem())
    world.api.raw("delete", f"webhook-endpoints/{endpoint['id']}")
    entries = AuditLog.objects.order_by("id")[before:]
    assert len(entries) >= 4
    assert {entry.actor_label for entry in entries} == {_label(world.api, world)}
    assert SYSTEM_ACTOR not in {entry.actor_label for entry in entries}


def test_each_key_is_its_own_actor(world: World) -> None:
    second = new_api(world.merchant)
    world.api.post("stores", {"code": "A", "name": "A"}, key=idem())
    second.post("stores", {"code": "B", "name": "B"}, key=idem())
    labels = dict(AuditLog.objects.filter(action="store.create").values_list("object_repr", "actor_label"))
    assert labels == {"A A": _label(world.api, world), "B B": _label(second, world)}


def test_a_non_user_actor_is_recorded_by_its_label() -> None:
    class Robot:
        audit_label = "robot #7"
        is_authenticated = True  # like the API's principal: still no user

    entry = audit_record(actor=Robot(), action="robot.act")
    assert (entry.actor_id, entry.actor_label) == (None, "robot #7")
