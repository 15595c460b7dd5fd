"""What an integrator found at the API's edges: control characters in ids, queries and bodies; unknown routes under
any method; bodies that are not objects; replayed errors that did not say they were replays."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.urls import get_resolver

from core.models import IdempotencyRecord
from payments.models import PaymentIntent, Refund
from tests.api.conftest import World, idem, pay_body

pytestmark = pytest.mark.django_db

CONTROL = ["\x00", "\x01", "\x1b", "\x7f", "\n"]


def assert_json_error(response: Any, status: int, param: str | None = ...) -> dict[str, Any]:  # type: ignore[assignment]
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"type", "code", "message", "param"}
    if param is not ...:
        assert body["error"]["param"] == param
    return body["error"]


def _api_routes_with_an_id() -> list[tuple[str, str]]:
    """Every API route with an id in its path, from the URLconf: a route added later is covered too."""
    routes = []
    for pattern in get_resolver().url_patterns:
        if str(pattern.pattern) != "api/v1/":
            continue
        for inner in pattern.url_patterns:  # type: ignore[attr-defined]
            route = str(inner.pattern)
            if "<" in route:
                routes.append((route, route.split("<")[1].split(">")[0].split(":")[-1]))
    return routes


ID_ROUTES = _api_routes_with_an_id()


def test_the_id_routes_are_found() -> None:
    assert ("payments/<str:payment_id>/capture", "payment_id") in ID_ROUTES
    assert len(ID_ROUTES) >= 7


@pytest.mark.parametrize("char", CONTROL, ids=[repr(c) for c in CONTROL])
@pytest.mark.parametrize(("route", "name"), ID_ROUTES, ids=[route for route, _ in ID_ROUTES])
def test_control_characters_in_path_ids_are_404(world: World, route: str, name: str, char: str) -> None:
    path = route.split("<")[0] + f"x_{char}y" + route.split(">")[1]
    for method in ("get", "post", "delete"):
        body = {} if method == "get" else {"data": "{}", "content_type": "application/json"}
        response = world.api.raw(method, path, **body)
        if response.status_code == 405:
            continue
        assert_json_error(response, 404)


@pytest.mark.parametrize("char", CONTROL, ids=[repr(c) for c in CONTROL])
@pytest.mark.parametrize("path", ["payments", "refunds", "events", "stores", "webhook-endpoints", "reports/summary"])
def test_control_characters_in_query_parameters_are_400(world: World, path: str, char: str) -> None:
    for params in ({"starting_after": f"pay_{char}"}, {f"type{char}": "x"}, {"limit": f"1{char}"}):
        response = world.api.raw("get", path, data=params)
        error = assert_json_error(response, 400)
        assert error["code"] == "invalid_characters"


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b", "\x7f"], ids=repr)
def test_control_characters_in_body_strings_are_400_and_write_nothing(world: World, char: str) -> None:
    cases = [
        ("payments", {**pay_body(world.card), "description": f"a{char}b"}, "description"),
        ("payments", {**pay_body(world.card), "metadata": {"order": f"{char}1"}}, "metadata.order"),
        ("payments", {**pay_body(world.card), "metadata": {f"k{char}": "1"}}, "metadata"),
        ("stores", {"code": f"S{char}", "name": "n"}, "code"),
        ("webhook-endpoints", {"url": f"https://example.com/{char}"}, "url"),
        ("refunds", {"payment": f"pay_{char}", "amount": 1}, "payment"),
    ]
    for path, body, param in cases:
        response = world.api.raw("post", path, data=json.dumps(body), content_type="application/json")
        error = assert_json_error(response, 400, param)
        assert error["code"] == "invalid_characters"
    assert not PaymentIntent.objects.exists()
    assert not IdempotencyRecord.objects.exists()


def test_tabs_and_line_breaks_in_body_strings_are_kept(world: World) -> None:
    status, body = world.api.post("payments", {**pay_body(world.card), "description": "two\tlines\r\nhere"}, key=idem())
    assert status == 201, body
    assert PaymentIntent.objects.get().description == "two\tlines\r\nhere"


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "get"])
@pytest.mark.parametrize("path", ["coupons/X/redeem", "nothing", "payments/pay_x/explode"])
def test_unknown_routes_answer_json_whatever_the_method(world: World, method: str, path: str) -> None:
    client = world.api.client
    client.handler.enforce_csrf_checks = True  # as a browser-less client meets it: no CSRF token, ever
    body = {} if method == "get" else {"data": "{}", "content_type": "application/json"}
    response = getattr(client, method)(f"/api/v1/{path}", **body)
    error = assert_json_error(response, 404)
    assert error["code"] == "resource_missing"


@pytest.mark.parametrize("body", ["null", "[]", "5", '"x"', "true"])
def test_a_body_that_is_not_an_object_is_refused(world: World, body: str) -> None:
    status, payment = world.api.post("payments", pay_body(world.card, capture_method="manual"), key=idem())
    assert status == 201
    assert payment["status"] == "requires_capture"
    for action in ("cancel", "capture"):
        response = world.api.raw(
            "post", f"payments/{payment['id']}/{action}", data=body, content_type="application/json"
        )
        error = assert_json_error(response, 400)
        assert error["code"] == "parse_error"
    assert PaymentIntent.objects.get().status == "requires_capture"
    # An empty body still stands for {}.
    assert world.api.post(f"payments/{payment['id']}/cancel", key=idem())[0] == 200


def test_a_replayed_error_says_it_is_a_replay(world: World) -> None:
    _, payment = world.api.post("payments", pay_body(world.card, 1000), key=idem())
    key = idem()
    send = {"data": json.dumps({"payment": payment["id"], "amount": 5000}), "content_type": "application/json"}
    first = world.api.raw("post", "refunds", HTTP_IDEMPOTENCY_KEY=key, **send)
    assert first.status_code == 422
    assert "Idempotent-Replayed" not in first
    again = world.api.raw("post", "refunds", HTTP_IDEMPOTENCY_KEY=key, **send)
    assert again.status_code == 422
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert not Refund.objects.exists()
    # A conflict is not a replay: the key was used for another request.
    other = world.api.raw(
        "post",
        "refunds",
        HTTP_IDEMPOTENCY_KEY=key,
        data=json.dumps({"payment": payment["id"], "amount": 4000}),
        content_type="application/json",
    )
    assert other.status_code == 409
    assert "Idempotent-Replayed" not in other
