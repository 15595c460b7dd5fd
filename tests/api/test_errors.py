"""No request yields a 500: malformed input gets the JSON error shape with the right status and param."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payments.models import PaymentIntent
from tests.api.conftest import World, idem, pay_body

pytestmark = pytest.mark.django_db


def assert_error(status: int, body: Any, expected_status: int, param: str | None = None) -> None:
    assert status == expected_status, body
    assert set(body) == {"error"}
    assert set(body["error"]) == {"type", "code", "message", "param"}
    if param is not None:
        assert body["error"]["param"] == param


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"amount": "100"}, "amount"),
        ({"amount": 10.5}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": 0}, "amount"),
        ({"amount": -1}, "amount"),
        ({"amount": 10**30}, "amount"),
        ({"amount": None}, "amount"),
        ({"currency": "cny"}, "currency"),
        ({"currency": 156}, "currency"),
        ({"confirm": "yes"}, "confirm"),
        ({"confirm": 1}, "confirm"),
        ({"capture_method": "later"}, "capture_method"),
        ({"payment_method": "card"}, "payment_method"),
        ({"payment_method": {"type": "card_number", "number": "6222000000000000"}}, "payment_method.number"),
        ({"payment_method": {"type": "card_token"}}, "payment_method.token"),
        ({"payment_method": {"type": "card_token", "token": 5}}, "payment_method.token"),
        ({"metadata": {"a": 1}}, "metadata.a"),
        ({"metadata": [1]}, "metadata"),
        ({"description": "x" * 201}, "description"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_malformed_payment_create(world: World, change: dict[str, Any], param: str) -> None:
    status, body = world.api.post("payments", {**pay_body(world.card), **change}, key=idem())
    expected = param.replace(".non_field_errors", "")
    assert_error(status, body, 400)
    assert body["error"]["param"] in (param, expected)
    assert not PaymentIntent.objects.exists()


def test_body_must_be_an_object(world: World) -> None:
    for body in ([1, 2], "text", 5, None):
        response = world.api.raw("post", "payments", data=json.dumps(body), content_type="application/json")
        assert_error(response.status_code, response.json(), 400)


def test_bad_json_is_400(world: World) -> None:
    response = world.api.raw("post", "payments", data="{not json", content_type="application/json")
    assert_error(response.status_code, response.json(), 400)
    assert response.json()["error"]["code"] == "parse_error"


def test_oversized_and_deeply_nested_bodies(world: World) -> None:
    big = json.dumps({"description": "x" * 3_000_000})
    response = world.api.raw("post", "payments", data=big, content_type="application/json")
    assert_error(response.status_code, response.json(), 413)
    deep = "[" * 100_000 + "]" * 100_000
    response = world.api.raw("post", "payments", data=deep, content_type="application/json")
    assert_error(response.status_code, response.json(), 400)
    for raw in ('{"amount": NaN}', '{"amount": 1' + "0" * 5000 + "}", '{"amount": 1e999}'):
        response = world.api.raw("post", "payments", data=raw, content_type="application/json")
        assert_error(response.status_code, response.json(), 400)
    assert not PaymentIntent.objects.exists()


def test_wrong_content_type_is_415(world: World) -> None:
    response = world.api.raw("post", "payments", data="amount=100", content_type="application/x-www-form-urlencoded")
    assert_error(response.status_code, response.json(), 415)


def test_unknown_routes_and_methods(world: World) -> None:
    for path in ("nope", "payments/x/y/z", "v2/payments"):
        response = world.api.raw("get", path)
        assert_error(response.status_code, response.json(), 404)
    response = world.api.client.get("/api/v2/payments")
    assert_error(response.status_code, response.json(), 404)
    response = world.api.raw("put", "payments")
    assert_error(response.status_code, response.json(), 405)
    status, body = world.api.get("payments/pay_missing")
    assert_error(status, body, 404)


def test_oversized_path_ids_are_404(world: World) -> None:
    assert world.api.get("webhook-endpoints/99999999999999999999999")[0] == 404
    assert world.api.get("webhook-endpoints/-1")[0] == 404
    for digits in ("²", "١٢", "１"):  # digits to str.isdigit(), not to int() or not ASCII
        assert world.api.get(f"webhook-endpoints/{digits}")[0] == 404, digits
        assert world.api.raw("delete", f"webhook-endpoints/{digits}").status_code == 404, digits
    assert world.api.get("payments/" + "x" * 300)[0] == 404


def test_every_response_has_a_request_id(world: World) -> None:
    for response in (world.api.raw("get", "payments"), world.api.raw("get", "nope")):
        assert response["Request-Id"]


def test_bad_idempotency_keys(world: World) -> None:
    for key in ("k" * 256, "tab\there", "键"):
        status, body = world.api.post("stores", {"code": "S", "name": "n"}, key=key)
        assert_error(status, body, 400, "Idempotency-Key")
    status, body = world.api.post("stores", {"code": "S", "name": "n"}, key="ok-key")
    assert status == 201


def test_null_characters_are_refused(world: World) -> None:
    for change, param in (({"metadata": {"a\x00": "x"}}, "metadata"), ({"metadata": {"a": "x\x00"}}, "metadata.a")):
        status, body = world.api.post("payments", {**pay_body(world.card), **change}, key=idem())
        assert_error(status, body, 400, param)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=10,
)
payment_bodies = st.fixed_dictionaries(
    {},
    optional={
        "amount": json_values,
        "currency": json_values,
        "payment_method": json_values
        | st.fixed_dictionaries({"type": st.sampled_from(["card_token", "x"]), "token": json_values}),
        "confirm": json_values,
        "capture_method": json_values,
        "metadata": json_values,
        "description": json_values,
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=payment_bodies | json_values)
def test_fuzzed_payment_bodies_never_5xx(world: World, body: Any) -> None:
    response = world.api.raw("post", "payments", data=json.dumps(body), content_type="application/json")
    assert response.status_code < 500, response.content
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"type", "code", "message", "param"}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(["payments", "refunds", "events", "stores", "webhook-endpoints", "reports/summary"]),
    params=st.dictionaries(
        st.sampled_from(["limit", "starting_after", "status", "created_gte", "created_lte", "date_from", "type"]),
        st.text(max_size=30) | st.dates().map(str) | st.integers().map(str),
        max_size=3,
    ),
)
def test_fuzzed_list_queries_never_5xx(world: World, path: str, params: dict[str, str]) -> None:
    response = world.api.raw("get", path, data=params)
    assert response.status_code < 500, response.content


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(["refunds", "stores", "webhook-endpoints", "payments/quote", "payments/pay_x/capture"]),
    body=json_values,
)
def test_fuzzed_posts_never_5xx(world: World, path: str, body: Any) -> None:
    response = world.api.raw("post", path, data=json.dumps(body), content_type="application/json")
    assert response.status_code < 500, response.content
