"""The schema documents every operation's errors in the one error shape, and says unknown fields are refused."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.api.conftest import World, idem, pay_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema() -> dict[str, Any]:
    response = Client().get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if path.startswith("/api/v1/") and method in ("get", "post", "delete")
    ]


def test_every_operation_documents_its_errors(schema: dict[str, Any]) -> None:
    error = schema["components"]["schemas"]["Error"]
    assert error["properties"]["error"]["required"] == ["type", "code", "message", "param"]
    operations = _operations(schema)
    assert len(operations) >= 15
    for path, method, operation in operations:
        documented = operation["responses"]
        expected = {"400", "401", "429"}
        if "{" in path:
            expected.add("404")
        if method != "get":
            expected |= {"403", "409", "413", "415", "422"}
        assert expected <= set(documented), (method, path, sorted(documented))
        for status in expected:
            reference = documented[status]["content"]["application/json"]["schema"]["$ref"]
            assert reference == "#/components/schemas/Error", (method, path, status)
    create = schema["paths"]["/api/v1/payments"]["post"]["responses"]
    assert "502" in create


def test_request_bodies_refuse_unknown_fields(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    bodies = {
        # JSON bodies, and the one multipart body (dispute evidence)
        next(iter(operation["requestBody"]["content"].values()))["schema"]["$ref"].rsplit("/", 1)[1]
        for _, _, operation in _operations(schema)
        if "requestBody" in operation
    }
    assert "PaymentCreateInRequest" in bodies or any(name.startswith("Payment") for name in bodies)
    for name in bodies:
        assert components[name]["additionalProperties"] is False, name
        assert "shallow copies" not in components[name].get("description", ""), "internal notes leak into the schema"


def test_an_unknown_field_is_refused_as_documented(world: World) -> None:
    status, body = world.api.post("payments", {**pay_body(world.card), "colour": "red"}, key=idem())
    assert status == 400
    assert body["error"]["param"] == "colour"
