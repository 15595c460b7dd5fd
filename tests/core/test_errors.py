from __future__ import annotations

import pytest
from rest_framework import serializers
from rest_framework.exceptions import ParseError, Throttled

from core.api import exception_handler
from core.errors import Conflict, IdempotencyConflict, InsufficientFunds, NotFound, RateLimited, ValidationFailed


@pytest.mark.parametrize(
    ("exc", "status", "error_type", "code"),
    [
        (ValidationFailed("bad", param="amount"), 422, "invalid_request_error", "validation_failed"),
        (NotFound("no"), 404, "invalid_request_error", "resource_missing"),
        (Conflict("state"), 409, "invalid_request_error", "state_conflict"),
        (IdempotencyConflict("key"), 409, "invalid_request_error", "idempotency_key_reused"),
        (InsufficientFunds("poor"), 422, "balance_error", "insufficient_balance"),
        (RateLimited("slow down", retry_after=3), 429, "rate_limit_error", "rate_limited"),
        (ParseError("JSON parse error"), 400, "invalid_request_error", "parse_error"),
        (Throttled(wait=2), 429, "rate_limit_error", "rate_limited"),
        (RuntimeError("boom"), 500, "api_error", "internal_error"),
    ],
)
def test_every_error_has_one_shape(exc: Exception, status: int, error_type: str, code: str) -> None:
    response = exception_handler(exc, {})
    assert response is not None
    assert response.status_code == status
    assert set(response.data["error"]) == {"type", "code", "message", "param"}
    assert (response.data["error"]["type"], response.data["error"]["code"]) == (error_type, code)
    if status == 429:
        assert int(response["Retry-After"]) >= 1
    if status == 500:
        assert "boom" not in response.data["error"]["message"]


def test_validation_errors_name_the_parameter() -> None:
    class Input(serializers.Serializer):
        amount = serializers.IntegerField(min_value=1)

    serializer = Input(data={"amount": "-5"})
    assert not serializer.is_valid()
    response = exception_handler(serializers.ValidationError(serializer.errors), {})
    assert response is not None
    assert response.status_code == 400
    assert response.data["error"]["param"] == "amount"
    assert response.data["error"]["code"] == "min_value"
