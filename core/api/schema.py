"""The schema's error responses, added to every operation in one place (drf-spectacular's postprocessing hook).

Every error under `/api/` has one shape; each operation documents the statuses it can answer with it, and every
request body says that unknown fields are refused (`additionalProperties: false`), as the strict serializers do.
"""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error under /api/: the status says its class, `code` the reason, `param` the field.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "type": {
                    "type": "string",
                    "enum": [
                        "invalid_request_error",
                        "authentication_error",
                        "permission_error",
                        "rate_limit_error",
                        "channel_error",
                        "api_error",
                    ],
                },
                "code": {"type": "string", "example": "resource_missing"},
                "message": {"type": "string"},
                "param": {"type": "string", "nullable": True, "example": "amount"},
            },
            "required": ["type", "code", "message", "param"],
        }
    },
    "required": ["error"],
}

ALWAYS = {
    "400": "Malformed query: an unknown or ill-typed parameter, a control character.",
    "401": "Missing or invalid API key.",
    "429": "Too many requests; see `Retry-After`.",
}
WITH_ID = {"404": "No such object (or another merchant's, or of the other mode)."}
WITH_BODY = {
    "400": "Malformed body: not a JSON object, bad JSON, an unknown field, a wrong type, a control character.",
    "403": "A read-only key tried to write.",
    "409": "The object is not in a state for this, or the idempotency key is reused or still running.",
    "413": "The body is too large.",
    "415": "The body is not application/json.",
    "422": "A well-formed request that breaks a rule.",
}
CHARGING = {"502": "A channel refused or failed (`channel_error`)."}
CHARGING_PREFIXES = ("/api/v1/payments", "/api/v1/refunds")


def error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular POSTPROCESSING_HOOKS entry."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    request_bodies: set[str] = set()
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/v1/"):
            continue
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            statuses = dict(ALWAYS)
            if "{" in path:
                statuses.update(WITH_ID)
            if method != "get":
                statuses.update(WITH_BODY)
                if path.startswith(CHARGING_PREFIXES) and method == "post":
                    statuses.update(CHARGING)
            responses = operation.setdefault("responses", {})
            for status, description in statuses.items():
                responses.setdefault(
                    status,
                    {
                        "description": description,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                    },
                )
            operation["responses"] = dict(sorted(responses.items()))
            for content in operation.get("requestBody", {}).get("content", {}).values():
                reference = content.get("schema", {}).get("$ref", "")
                if reference.startswith("#/components/schemas/"):
                    request_bodies.add(reference.rsplit("/", 1)[1])
    for name in request_bodies:
        _refuse_unknown_fields(schemas, schemas.get(name))
    return result


def _refuse_unknown_fields(schemas: dict[str, Any], schema: dict[str, Any] | None) -> None:
    """Marks a request body, and the objects with named fields nested in it, `additionalProperties: false`; a
    free-form map (metadata) keeps its own `additionalProperties`."""
    if not schema or schema.get("type") != "object" or "properties" not in schema:
        return
    schema["additionalProperties"] = False
    for field in schema["properties"].values():
        reference = field.get("$ref") or next(
            (part.get("$ref") for part in field.get("allOf", []) + field.get("oneOf", []) if "$ref" in part), None
        )
        if reference:
            _refuse_unknown_fields(schemas, schemas.get(reference.rsplit("/", 1)[1]))
        else:
            _refuse_unknown_fields(schemas, field)
