"""Every endpoint but /healthz needs a fresh, correct signature from a known caller."""

from __future__ import annotations

import time

import httpx
import pytest

from simulator import signing
from simulator.client import SimulatorClient, SimulatorError
from tests.simulator_fixtures import SimulatorProcess

BODY = (
    b'{"channel":"acq-unionpay-a","reference":"s-1","amount":100,"currency":"CNY",'
    b'"instrument":{"kind":"card","token":"t"}}'
)
PATH = "/v1/payments/authorise"


def post(server: SimulatorProcess, headers: dict[str, str], body: bytes = BODY) -> httpx.Response:
    return httpx.post(server.url + PATH, content=body, headers=headers)


def signed(server: SimulatorProcess, **overrides: object) -> dict[str, str]:
    kw = {"key_id": server.key_id, "secret": server.secret, "method": "POST", "path": PATH, "body": BODY}
    kw.update(overrides)
    if "skew" in kw:
        kw["now"] = time.time() + kw.pop("skew")  # type: ignore[operator]
    return signing.signed_headers(**kw)  # type: ignore[arg-type]


def test_a_signed_request_is_accepted(simulator: SimulatorClient, simulator_server: SimulatorProcess) -> None:
    response = post(simulator_server, signed(simulator_server))
    assert (response.status_code, response.json()["state"]) == (200, "authorised")
    [row] = simulator.journal_all(reference="s-1")
    assert row["key_id"] == simulator_server.key_id


@pytest.mark.parametrize(
    ("overrides", "drop", "code"),
    [
        ({}, signing.SIGNATURE_HEADER, "signature_missing"),
        ({}, signing.KEY_ID_HEADER, "signature_missing"),
        ({"key_id": "stranger"}, None, "unknown_key"),
        ({"secret": "wrong"}, None, "bad_signature"),
        ({"path": "/v1/payments/capture"}, None, "bad_signature"),
        ({"method": "PUT"}, None, "bad_signature"),
        ({"body": b"{}"}, None, "bad_signature"),
        ({"skew": -400}, None, "stale_timestamp"),
        ({"skew": 400}, None, "stale_timestamp"),
    ],
)
def test_bad_signatures_are_refused_and_nothing_happens(
    simulator: SimulatorClient, simulator_server: SimulatorProcess, overrides: dict, drop: str | None, code: str
) -> None:
    headers = signed(simulator_server, **overrides)
    if drop:
        del headers[drop]
    response = post(simulator_server, headers)
    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "type": "authentication",
            "code": code,
            "message": "the request signature is missing, stale or wrong",
            "param": None,
        }
    }
    assert simulator.payment_status(channel="acq-unionpay-a", reference="s-1").state == "not_found"


def test_admin_and_sandbox_endpoints_need_signatures_too(simulator_server: SimulatorProcess) -> None:
    for method, path in [
        ("POST", "/sandbox/reset"),
        ("GET", "/journal"),
        ("GET", "/admin/channels"),
        ("GET", "/sandbox/otp/x"),
    ]:
        assert httpx.request(method, simulator_server.url + path).status_code == 401


def test_the_query_string_is_signed(simulator: SimulatorClient, simulator_server: SimulatorProcess) -> None:
    headers = signing.signed_headers(simulator_server.key_id, simulator_server.secret, "GET", "/journal?limit=1", b"")
    assert httpx.get(simulator_server.url + "/journal?limit=1", headers=headers).status_code == 200
    assert httpx.get(simulator_server.url + "/journal?limit=2", headers=headers).status_code == 401


def test_health_is_open(simulator_server: SimulatorProcess) -> None:
    assert httpx.get(simulator_server.url + "/healthz").json() == {"status": "ok"}


def test_a_client_with_the_wrong_secret_gets_401(simulator_server: SimulatorProcess) -> None:
    client = SimulatorClient(simulator_server.url, key_id=simulator_server.key_id, secret="nope")
    with client, pytest.raises(SimulatorError) as caught:
        client.channels()
    assert (caught.value.status, caught.value.code) == (401, "bad_signature")


def test_unknown_endpoints_and_methods(simulator: SimulatorClient) -> None:
    with pytest.raises(SimulatorError) as caught:
        simulator.request("GET", "/v1/nothing")
    assert (caught.value.status, caught.value.code) == (404, "no_such_endpoint")
    with pytest.raises(SimulatorError) as caught:
        simulator.request("GET", "/v1/payments/authorise")
    assert (caught.value.status, caught.value.code) == (405, "method_not_allowed")


def test_a_body_that_is_not_a_json_object(simulator_server: SimulatorProcess) -> None:
    for body in (b"[1]", b"{oops"):
        response = post(simulator_server, signed(simulator_server, body=body), body=body)
        assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_json")


@pytest.mark.parametrize("timestamp", ["²" * 10, "١٧٠٠٠٠٠٠٠٠"])
def test_a_timestamp_of_other_digits_is_stale_not_a_crash(timestamp: str) -> None:
    outcome = signing.verify(
        keys={"k": "secret"}, key_id="k", timestamp=timestamp, sig="00", method="POST", path="/v1/x", body=b""
    )
    assert outcome == "stale_timestamp"
