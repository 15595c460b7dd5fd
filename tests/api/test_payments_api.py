"""Payments, refunds and quotes through the API, over the in-process channel."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from payments.models import PaymentIntent
from tests.api.conftest import World, agreement_body, idem, new_api, pay_body

pytestmark = pytest.mark.django_db


def test_create_and_confirm_captures_and_earns_points(world: World) -> None:
    live = new_api(world.merchant, mode="live")
    body_in = agreement_body(world.card, world.merchant, 12345, merchant_reference="order-1")
    status, body = live.post("payments", body_in, key=idem())
    assert status == 201
    assert body["object"] == "payment"
    assert body["id"].startswith("pay_")
    assert body["status"] == "succeeded"
    assert body["amount"] == body["amount_captured"] == 12345
    assert body["currency"] == "CNY"
    assert body["points_earned"] == 246  # ¥123.45 × 2 (dining), floored
    assert body["merchant_reference"] == "order-1"
    assert body["payment_method"] == {
        "type": "agreement",
        "card": {"bank": world.card.bank.code, "last4": world.card.last4},
    }
    intent = PaymentIntent.objects.get(public_id=body["id"])
    assert (intent.merchant, intent.card, intent.livemode) == (world.merchant, world.card, True)


def test_a_test_mode_payment_earns_no_points_owes_no_fee_and_spends_no_points(world: World) -> None:
    from django.utils import timezone

    from payments.models import FeeSchedule, FeeSplit

    FeeSchedule.objects.create(
        merchant=world.merchant,
        mdr_percent="0.6",
        issuer_share="60",
        acquirer_share="25",
        channel_share="10",
        alliance_share="5",
        effective_from=timezone.now() - dt.timedelta(minutes=1),
    )
    status, body = world.api.post("payments", pay_body(world.card, 12345), key=idem())
    assert (status, body["status"], body["livemode"], body["points_earned"]) == (201, "succeeded", False, 0)
    assert not FeeSplit.objects.exists()
    assert PaymentIntent.objects.get(public_id=body["id"]).fee == 0
    status, error = world.api.post("payments", pay_body(world.card, 12345, use_points=100), key=idem())
    assert (status, error["error"]["code"], error["error"]["param"]) == (422, "points_not_available", "use_points")
    live = new_api(world.merchant, mode="live")
    _, paid = live.post("payments", agreement_body(world.card, world.merchant, 12345), key=idem())
    assert paid["points_earned"] == 246
    assert FeeSplit.objects.filter(payment__public_id=paid["id"]).exists()


def test_create_without_confirm_then_confirm(world: World) -> None:
    status, body = world.api.post("payments", pay_body(world.card, 5000, confirm=False), key=idem())
    assert (status, body["status"]) == (201, "requires_confirmation")
    status, body = world.api.post(f"payments/{body['id']}/confirm", key=idem())
    assert (status, body["status"], body["amount_captured"]) == (200, "succeeded", 5000)


def test_manual_capture_partial(world: World) -> None:
    _, body = world.api.post("payments", pay_body(world.card, 10000, capture_method="manual"), key=idem())
    assert body["status"] == "requires_capture"
    assert body["amount_capturable"] == 10000
    status, body = world.api.post(f"payments/{body['id']}/capture", {"amount": 6000}, key=idem())
    assert status == 200
    assert (body["status"], body["amount_captured"], body["amount_capturable"]) == ("succeeded", 6000, 0)


def test_capture_more_than_authorised_is_refused(world: World) -> None:
    _, body = world.api.post("payments", pay_body(world.card, 10000, capture_method="manual"), key=idem())
    status, error = world.api.post(f"payments/{body['id']}/capture", {"amount": 10001}, key=idem())
    assert status == 422
    assert error["error"]["code"] == "amount_too_large"
    assert error["error"]["param"] == "amount"
    assert PaymentIntent.objects.get(public_id=body["id"]).status == "requires_capture"


def test_cancel_authorisation(world: World) -> None:
    _, body = world.api.post("payments", pay_body(world.card, 10000, capture_method="manual"), key=idem())
    status, body = world.api.post(f"payments/{body['id']}/cancel", {"reason": "duplicate"}, key=idem())
    assert (status, body["status"], body["amount_capturable"]) == (200, "canceled", 0)
    status, error = world.api.post(f"payments/{body['id']}/capture", key=idem())
    assert (status, error["error"]["code"]) == (409, "payment_unexpected_state")


def test_declined_payment_is_failed_with_reason(world: World) -> None:
    status, body = world.api.post("payments", pay_body(world.card, 10051), key=idem())
    assert status == 201
    assert body["status"] == "failed"
    assert body["failure_code"]
    assert body["points_earned"] == 0


def test_confirm_twice_conflicts(world: World) -> None:
    _, body = world.api.post("payments", pay_body(world.card, 1000), key=idem())
    status, error = world.api.post(f"payments/{body['id']}/confirm", key=idem())
    assert (status, error["error"]["code"]) == (409, "payment_unexpected_state")


def test_unknown_card_token(world: World) -> None:
    body = pay_body(world.card)
    body["payment_method"]["token"] = "card_test_nope"
    status, error = world.api.post("payments", body, key=idem())
    assert status == 404
    assert error["error"]["param"] == "payment_method.token"
    assert not PaymentIntent.objects.exists()


def test_card_token_refused_for_live_keys(world: World) -> None:
    live = new_api(world.merchant, mode="live")
    status, error = live.post("payments", pay_body(world.card), key=idem())
    assert status == 422
    assert error["error"] == {
        "type": "invalid_request_error",
        "code": "payment_method_unavailable",
        "message": "card_token payments are for test mode only.",
        "param": "payment_method.type",
    }
    assert not PaymentIntent.objects.exists()


def test_unknown_currency_is_refused(world: World) -> None:
    status, error = world.api.post("payments", pay_body(world.card, currency="XXQ"), key=idem())
    assert status in (400, 422)
    assert error["error"]["param"] in ("currency", "amount")
    assert not PaymentIntent.objects.exists()


def test_retrieve_and_list_with_filters_and_pagination(world: World) -> None:
    ids = [world.api.post("payments", pay_body(world.card, 1000 + n), key=idem())[1]["id"] for n in range(5)]
    world.api.post("payments", pay_body(world.card, 2051), key=idem())  # declined
    status, body = world.api.get(f"payments/{ids[0]}")
    assert (status, body["id"], body["amount"]) == (200, ids[0], 1000)

    status, first = world.api.get("payments", {"limit": 2, "status": "succeeded"})
    assert status == 200
    assert [row["id"] for row in first["data"]] == [ids[4], ids[3]]
    assert first["has_more"] is True
    _, second = world.api.get("payments", {"limit": 2, "status": "succeeded", "starting_after": ids[3]})
    assert [row["id"] for row in second["data"]] == [ids[2], ids[1]]
    _, last = world.api.get("payments", {"limit": 2, "status": "succeeded", "starting_after": ids[1]})
    assert [row["id"] for row in last["data"]] == [ids[0]]
    assert last["has_more"] is False
    _, failed = world.api.get("payments", {"status": "failed"})
    assert [row["amount"] for row in failed["data"]] == [2051]
    _, none = world.api.get("payments", {"created_lte": 0})
    assert none["data"] == []
    _, all_ = world.api.get("payments", {"created_gte": 0, "limit": 100})
    assert len(all_["data"]) == 6


def test_list_rejects_bad_query(world: World) -> None:
    for params, param in (
        ({"limit": 101}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"status": "nope"}, "status"),
        ({"colour": "red"}, "colour"),
        ({"created_gte": "99999999999999999999"}, "created_gte"),
    ):
        status, error = world.api.get("payments", params)
        assert status == 400, params
        assert error["error"]["param"] == param
    status, error = world.api.get("payments", {"starting_after": "pay_unknown"})
    assert (status, error["error"]["param"]) == (404, "starting_after")


def test_refund_create_list_retrieve(world: World) -> None:
    api = new_api(world.merchant, mode="live")  # live: the payment earns points, the refunds reverse them
    _, payment = api.post("payments", agreement_body(world.card, world.merchant, 10000), key=idem())
    status, refund = api.post("refunds", {"payment": payment["id"], "amount": 2500, "reason": "returned"}, key=idem())
    assert status == 201
    assert refund["id"].startswith("re_")
    assert (refund["status"], refund["amount"], refund["payment"]) == ("succeeded", 2500, payment["id"])
    assert refund["points_reversed"] == 50  # 200 earned × 2500 / 10000
    status, rest = api.post("refunds", {"payment": payment["id"]}, key=idem())
    assert (status, rest["amount"]) == (201, 7500)
    status, error = api.post("refunds", {"payment": payment["id"], "amount": 1}, key=idem())
    assert (status, error["error"]["code"]) == (422, "refund_exceeds_captured")
    status, error = api.post("refunds", {"payment": payment["id"]}, key=idem())
    assert (status, error["error"]["code"]) == (409, "charge_already_refunded")
    _, listed = api.get("refunds", {"payment": payment["id"]})
    assert [row["id"] for row in listed["data"]] == [rest["id"], refund["id"]]
    status, fetched = api.get(f"refunds/{refund['id']}")
    assert (status, fetched) == (200, refund)
    _, fetched_payment = api.get(f"payments/{payment['id']}")
    assert fetched_payment["amount_refunded"] == 10000


def test_refund_above_captured_is_refused(world: World) -> None:
    _, payment = world.api.post("payments", pay_body(world.card, 1000), key=idem())
    status, error = world.api.post("refunds", {"payment": payment["id"], "amount": 1001}, key=idem())
    assert (status, error["error"]["code"], error["error"]["param"]) == (422, "refund_exceeds_captured", "amount")


def test_quote(world: World) -> None:
    live = new_api(world.merchant, mode="live")
    live.post("payments", agreement_body(world.card, world.merchant, 50000), key=idem())  # earns 1000 points
    status, quote = world.api.post(
        "payments/quote",
        {"amount": 12000, "currency": "CNY", "payment_method": {"type": "card_token", "token": world.card.token}},
    )
    assert status == 200
    assert quote["points_to_earn"] == 240
    assert quote["earning_rate"] == "2"
    assert quote["points_available"] == 1000
    read_only = new_api(world.merchant, scope="read")
    status, again = read_only.post(
        "payments/quote",
        {"amount": 12000, "currency": "CNY", "payment_method": {"type": "card_token", "token": world.card.token}},
    )
    assert (status, again) == (200, quote)


def test_events_follow_payment_states(world: World) -> None:
    _, payment = world.api.post("payments", pay_body(world.card, 3000, capture_method="manual"), key=idem())
    world.api.post(f"payments/{payment['id']}/capture", key=idem())
    _, payment_refund = world.api.post("refunds", {"payment": payment["id"], "amount": 100}, key=idem())
    status, listed = world.api.get("events", {"limit": 10})
    assert status == 200
    assert [event["type"] for event in listed["data"]] == [
        "refund.succeeded",
        "payment.succeeded",
        "payment.requires_capture",
        "payment.created",
    ]
    assert listed["data"][0]["data"]["object"]["id"] == payment_refund["id"]
    assert listed["data"][1]["data"]["object"]["amount_captured"] == 3000
    _, only = world.api.get("events", {"type": "payment.created"})
    assert len(only["data"]) == 1
    status, event = world.api.get(f"events/{listed['data'][0]['id']}")
    assert (status, event) == (200, listed["data"][0])


def _objects(world: World) -> dict[str, Any]:
    _, payment = world.api.post("payments", pay_body(world.card, 1000), key=idem())
    _, refund = world.api.post("refunds", {"payment": payment["id"], "amount": 10}, key=idem())
    _, endpoint = world.api.post("webhook-endpoints", {"url": "https://example.com/h"}, key=idem())
    world.api.post("stores", {"code": "S1", "name": "One"}, key=idem())
    _, events = world.api.get("events")
    return {
        "payment": payment["id"],
        "refund": refund["id"],
        "endpoint": endpoint["id"],
        "event": events["data"][0]["id"],
    }


def test_tenant_isolation(world: World, other: World) -> None:
    mine = _objects(world)
    theirs = other.api
    for path in (
        f"payments/{mine['payment']}",
        f"refunds/{mine['refund']}",
        f"webhook-endpoints/{mine['endpoint']}",
        f"events/{mine['event']}",
    ):
        status, error = theirs.get(path)
        assert (status, error["error"]["code"]) == (404, "resource_missing"), path
    for path, body in (
        (f"payments/{mine['payment']}/capture", {}),
        (f"payments/{mine['payment']}/cancel", {}),
        (f"payments/{mine['payment']}/confirm", {}),
        ("refunds", {"payment": mine["payment"], "amount": 1}),
        (f"webhook-endpoints/{mine['endpoint']}", {"enabled": False}),
    ):
        status, error = theirs.post(path, body, key=idem())
        assert status == 404, path
    assert theirs.raw("delete", f"webhook-endpoints/{mine['endpoint']}").status_code == 404
    for listing in ("payments", "refunds", "events", "stores", "webhook-endpoints"):
        status, body = theirs.get(listing)
        assert (status, body["data"]) == (200, []), listing
    # Their card's token is not a way into my customers either: a payment by it belongs to them.
    status, body = theirs.post("payments", pay_body(world.card, 500), key=idem())
    assert status == 201
    assert PaymentIntent.objects.get(public_id=body["id"]).merchant == other.merchant
    assert world.api.get(f"payments/{body['id']}")[0] == 404


def test_quote_needs_a_key(world: World) -> None:
    from rest_framework.test import APIClient

    response = APIClient().post("/api/v1/payments/quote", {"amount": 100, "currency": "CNY"}, format="json")
    assert response.status_code == 401
