"""One exception hierarchy for domain errors.

Services raise these; the API maps them to `{"error": {"type", "code", "message", "param"}}` with the status carried
here, and the portal and admin show the message. A domain error never leaves anything half-written: services raise
before they write or inside the atomic block that is rolled back.
"""

from __future__ import annotations


class MengkaError(Exception):
    """Base of every domain error."""

    http_status = 400
    error_type = "invalid_request_error"
    code = "invalid_request"
    replayed = False  # set on an error replayed from an idempotency key's stored outcome

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param

    def as_dict(self) -> dict[str, str | None]:
        return {"type": self.error_type, "code": self.code, "message": self.message, "param": self.param}


class ValidationFailed(MengkaError):
    """The request is well-formed but its values break a rule (422)."""

    http_status = 422
    code = "validation_failed"


class NotFound(MengkaError):
    http_status = 404
    code = "resource_missing"


class PermissionDenied(MengkaError):
    http_status = 403
    error_type = "permission_error"
    code = "permission_denied"


class AuthenticationFailed(MengkaError):
    http_status = 401
    error_type = "authentication_error"
    code = "authentication_failed"


class Conflict(MengkaError):
    """The object is not in a state that allows this operation, or a concurrent change won (409)."""

    http_status = 409
    code = "state_conflict"


class IdempotencyConflict(Conflict):
    code = "idempotency_key_reused"


class InsufficientFunds(MengkaError):
    http_status = 422
    error_type = "balance_error"
    code = "insufficient_balance"


class RateLimited(MengkaError):
    http_status = 429
    error_type = "rate_limit_error"
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int = 1, **kwargs: str | None) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ChannelError(MengkaError):
    """An outside party (acquirer, bank, wallet) failed or refused."""

    http_status = 502
    error_type = "channel_error"
    code = "channel_error"
