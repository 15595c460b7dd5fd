"""Test and live mode: everything a key makes records its mode, and a key sees only objects of its own mode."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from core.errors import NotFound
from merchants import services as merchant_services
from merchants.models import Event, Store, WebhookDelivery, WebhookEndpoint
from payments import services
from payments.models import PaymentIntent, Refund
from tests.api.conftest import Api, World, idem, new_api, pay_body
from tests.factories import AllianceOperatorFactory, CardFactory, CardholderFactory, CardProductFactory, card_agreement

pytestmark = pytest.mark.django_db


@pytest.fixture
def live(world: World) -> Api:
    """A live key of world's merchant (world.api holds its test key)."""
    return new_api(world.merchant, mode="live")


def _agreement_body(world: World, amount: int = 1_000) -> dict[str, Any]:
    """A body both modes may send: an agreement the cardholder granted world's merchant."""
    granted = card_agreement(world.card, world.merchant)
    return {
        "amount": amount,
        "currency": "CNY",
        "confirm": True,
        "payment_method": {"type": "agreement", "token": granted.token},
    }


def _test_mode_objects(world: World) -> dict[str, Any]:
    _, payment = world.api.post("payments", pay_body(world.card, 1000, capture_method="manual"), key=idem())
    _, captured = world.api.post("payments", pay_body(world.card, 2000), key=idem())
    _, refund = world.api.post("refunds", {"payment": captured["id"], "amount": 10}, key=idem())
    _, endpoint = world.api.post("webhook-endpoints", {"url": "https://example.com/h"}, key=idem())
    _, store = world.api.post("stores", {"code": "S1", "name": "One"}, key=idem())
    _, events = world.api.get("events")
    return {
        "payment": payment,
        "captured": captured,
        "refund": refund,
        "endpoint": endpoint,
        "store": store,
        "events": events["data"],
    }


def test_objects_record_the_mode_of_the_key_that_made_them(world: World) -> None:
    made = _test_mode_objects(world)
    for name in ("payment", "captured", "refund", "endpoint", "store"):
        assert made[name]["livemode"] is False, name
    assert [event["livemode"] for event in made["events"]] == [False] * len(made["events"])
    assert {event["data"]["object"]["livemode"] for event in made["events"]} == {False}
    assert PaymentIntent.objects.get(public_id=made["payment"]["id"]).livemode is False
    assert Refund.objects.get(public_id=made["refund"]["id"]).intent.livemode is False
    assert set(Event.objects.values_list("livemode", flat=True)) == {False}
    assert WebhookEndpoint.objects.get().livemode is False
    assert Store.objects.get(code="S1").livemode is False


def test_live_key_objects_are_live(world: World, live: Api) -> None:
    status, payment = live.post("payments", _agreement_body(world), key=idem())
    assert (status, payment["livemode"]) == (201, True)
    status, refund = live.post("refunds", {"payment": payment["id"], "amount": 100}, key=idem())
    assert (status, refund["livemode"]) == (201, True)
    assert PaymentIntent.objects.get(public_id=payment["id"]).livemode is True
    _, events = live.get("events")
    assert {event["livemode"] for event in events["data"]} == {True}
    assert len(events["data"]) == 3  # payment.created, payment.succeeded, refund.succeeded


def test_each_mode_pays_through_its_own_channels(world: World, live: Api) -> None:
    """A test key's payment goes to a sandbox channel only, a live key's never: a test key cannot move real money."""
    status, test_payment = world.api.post("payments", _agreement_body(world), key=idem())
    status_live, live_payment = live.post("payments", _agreement_body(world), key=idem())
    assert (status, status_live) == (201, 201)
    routed = {p.public_id: p.channel.code for p in PaymentIntent.objects.select_related("channel")}
    assert routed == {test_payment["id"]: "acq-main-sandbox", live_payment["id"]: "acq-main"}
    from payments.models import Channel

    Channel.objects.filter(sandbox=True).update(enabled=False)
    services.routing_config_changed()
    status, refused = world.api.post("payments", _agreement_body(world), key=idem())
    assert (status, refused["status"], refused["failure_code"]) == (201, "failed", "no_channel")
    status, still_live = live.post("payments", _agreement_body(world), key=idem())
    assert (status, still_live["status"]) == (201, "succeeded")


def test_another_modes_objects_are_404_and_lists_leave_them_out(world: World, live: Api) -> None:
    made = _test_mode_objects(world)
    for path in (
        f"payments/{made['payment']['id']}",
        f"refunds/{made['refund']['id']}",
        f"webhook-endpoints/{made['endpoint']['id']}",
        f"events/{made['events'][0]['id']}",
    ):
        status, error = live.get(path)
        assert (status, error["error"]["code"]) == (404, "resource_missing"), path
        assert world.api.get(path)[0] == 200, path  # the test key still sees its own
    for path, body in (
        (f"payments/{made['payment']['id']}/capture", {}),
        (f"payments/{made['payment']['id']}/cancel", {}),
        (f"payments/{made['payment']['id']}/confirm", {}),
        ("refunds", {"payment": made["captured"]["id"], "amount": 1}),
        (f"webhook-endpoints/{made['endpoint']['id']}", {"enabled": False}),
    ):
        status, error = live.post(path, body, key=idem())
        assert (status, error["error"]["code"]) == (404, "resource_missing"), path
    assert live.raw("delete", f"webhook-endpoints/{made['endpoint']['id']}").status_code == 404
    for listing in ("payments", "refunds", "events", "stores", "webhook-endpoints"):
        status, body = live.get(listing)
        assert (status, body["data"]) == (200, []), listing
    status, error = live.get("payments", {"starting_after": made["payment"]["id"]})
    assert (status, error["error"]["param"]) == (404, "starting_after")
    # Nothing the live key tried changed the test-mode objects.
    payment = PaymentIntent.objects.get(public_id=made["payment"]["id"])
    assert (payment.status, payment.amount_captured) == ("requires_capture", 0)
    assert Refund.objects.filter(intent__public_id=made["captured"]["id"]).count() == 1
    assert WebhookEndpoint.objects.get().enabled is True
    # And the other way round: the test key does not see the live key's payment.
    _, live_payment = live.post("payments", _agreement_body(world), key=idem())
    assert world.api.get(f"payments/{live_payment['id']}")[0] == 404
    _, listed = world.api.get("payments")
    assert live_payment["id"] not in {row["id"] for row in listed["data"]}
    assert {row["livemode"] for row in listed["data"]} == {False}


def test_idempotency_keys_of_the_two_modes_never_meet(world: World, live: Api) -> None:
    body, key = _agreement_body(world), idem()
    status, in_test = world.api.post("payments", body, key=key)
    assert (status, in_test["livemode"]) == (201, False)
    response = live.client.post("/api/v1/payments", body, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response
    in_live = response.json()
    assert in_live["id"] != in_test["id"]
    assert in_live["livemode"] is True
    # Within its own mode the key still replays.
    assert live.post("payments", body, key=key) == (201, in_live)
    assert world.api.post("payments", body, key=key) == (201, in_test)
    assert PaymentIntent.objects.count() == 2


def test_service_calls_in_one_mode_do_not_find_the_others_payments(world: World) -> None:
    _, payment = world.api.post("payments", pay_body(world.card, 1000, capture_method="manual"), key=idem())
    with pytest.raises(NotFound):
        services.payment_capture(merchant=world.merchant, payment_id=payment["id"], idempotency_key=idem())
    captured = services.payment_capture(
        merchant=world.merchant, payment_id=payment["id"], idempotency_key=idem(), livemode=False
    )
    assert (captured.status, captured.livemode) == ("succeeded", False)


def test_payments_made_outside_the_api_are_live(world: World) -> None:
    intent = services.payment_create(
        merchant=world.merchant,
        cardholder=world.card.cardholder,
        card=world.card,
        amount=1_000,
        currency="CNY",
        idempotency_key=idem(),
        confirm=True,
    )
    assert intent.livemode is True
    assert PaymentIntent.objects.get(pk=intent.pk).livemode is True
    assert world.api.get(f"payments/{intent.public_id}")[0] == 404  # not in the test key's sandbox


def test_webhook_endpoints_receive_only_their_modes_events(world: World, live: Api) -> None:
    _, test_endpoint = world.api.post("webhook-endpoints", {"url": "https://test.example.com/h"}, key=idem())
    _, live_endpoint = live.post("webhook-endpoints", {"url": "https://live.example.com/h"}, key=idem())
    assert (test_endpoint["livemode"], live_endpoint["livemode"]) == (False, True)
    _, test_listed = world.api.get("webhook-endpoints")
    _, live_listed = live.get("webhook-endpoints")
    assert [row["id"] for row in test_listed["data"]] == [test_endpoint["id"]]
    assert [row["id"] for row in live_listed["data"]] == [live_endpoint["id"]]
    world.api.post("payments", pay_body(world.card, 1000), key=idem())
    live.post("payments", _agreement_body(world), key=idem())
    deliveries = WebhookDelivery.objects.select_related("event", "endpoint")
    assert deliveries.count() == 4  # created and succeeded, once in each mode
    for delivery in deliveries:
        assert delivery.event.livemode == delivery.endpoint.livemode
    by_endpoint = {row.endpoint_id: row.event.payload["livemode"] for row in deliveries}
    assert by_endpoint == {test_endpoint["id"]: False, live_endpoint["id"]: True}


def test_the_event_body_sent_to_webhooks_carries_the_mode(world: World) -> None:
    _, payment = world.api.post("payments", pay_body(world.card, 1000), key=idem())
    event = Event.objects.filter(type="payment.succeeded").get()
    body = merchant_services.event_body(event)
    assert (body["livemode"], body["data"]["object"]["id"]) == (False, payment["id"])


def test_stores_are_per_mode(world: World, live: Api) -> None:
    assert world.api.post("stores", {"code": "SH-1", "name": "Sandbox shop"}, key=idem())[0] == 201
    status, store = live.post("stores", {"code": "SH-1", "name": "Nanjing Road"}, key=idem())
    assert (status, store["livemode"]) == (201, True)
    status, error = live.post("stores", {"code": "SH-1", "name": "Again"}, key=idem())
    assert (status, error["error"]["code"]) == (409, "store_exists")
    assert [row["name"] for row in world.api.get("stores")[1]["data"]] == ["Sandbox shop"]
    assert [row["name"] for row in live.get("stores")[1]["data"]] == ["Nanjing Road"]


def _captured(world: World, amount: int, *, livemode: bool) -> None:
    cardholder = CardholderFactory()
    card = CardFactory(cardholder=cardholder, product=CardProductFactory(bank=world.issuer))
    PaymentIntent.objects.create(
        merchant=world.merchant, cardholder=cardholder, card=card, issuer=world.issuer, amount=amount,
        amount_captured=amount, status="succeeded", captured_at=timezone.now(), livemode=livemode,
    )  # fmt: skip


def test_the_summary_counts_only_the_keys_mode(world: World, live: Api) -> None:
    for amount in (1_000, 2_000):
        _captured(world, amount, livemode=False)
    _captured(world, 50_000, livemode=True)
    status, in_test = world.api.get("reports/summary")
    assert status == 200
    assert (in_test["livemode"], in_test["total"]["count"], in_test["total"]["volume"]) == (False, 2, 3_000)
    status, in_live = live.get("reports/summary")
    assert (in_live["livemode"], in_live["total"]["count"], in_live["total"]["volume"]) == (True, 1, 50_000)


def test_events_of_a_job_s_change_are_of_the_payments_mode(world: World, live: Api) -> None:
    _, held = world.api.post("payments", pay_body(world.card, 3000, capture_method="manual"), key=idem())
    PaymentIntent.objects.filter(public_id=held["id"]).update(
        authorization_expires_at=timezone.now() - dt.timedelta(minutes=1)
    )
    assert services.authorizations_expire() == 1
    canceled = Event.objects.get(type="payment.canceled")
    assert (canceled.livemode, canceled.payload["livemode"]) == (False, False)
    assert world.api.get(f"events/{canceled.public_id}")[0] == 200
    assert live.get(f"events/{canceled.public_id}")[0] == 404


def test_the_schema_shows_livemode_on_every_object() -> None:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    for name in ("PaymentOut", "RefundOut", "EventOut", "WebhookEndpointOut", "StoreOut", "SummaryOut"):
        component = components[name]
        assert component["properties"]["livemode"]["type"] == "boolean", name
        assert "livemode" in component["required"], name


def test_the_admin_filters_by_mode(world: World, live: Api, client: Any) -> None:
    _, in_test = world.api.post("payments", pay_body(world.card, 1000), key=idem())
    _, in_live = live.post("payments", _agreement_body(world), key=idem())
    client.force_login(AllianceOperatorFactory())
    for livemode, shown, hidden in (("0", in_test, in_live), ("1", in_live, in_test)):
        page = client.get("/admin/payments/paymentintent/", {"livemode__exact": livemode}).content.decode()
        assert shown["id"] in page
        assert hidden["id"] not in page
    refund_page = client.get("/admin/payments/refund/", {"intent__livemode__exact": "0"})
    assert refund_page.status_code == 200
    for path in ("/admin/merchants/event/", "/admin/merchants/store/", "/admin/merchants/webhookendpoint/"):
        assert client.get(path, {"livemode__exact": "0"}).status_code == 200, path
