"""The API's one exception handler: every error is `{"error": {"type", "code", "message", "param"}}`."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response

from core.errors import MengkaError, RateLimited

# The package's name, as before it was a package: searches of the logs for unhandled API errors still match.
logger = logging.getLogger("core.api")


def error_body(error_type: str, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {"error": {"type": error_type, "code": code, "message": message, "param": param}}


def _first_validation_error(detail: Any, prefix: str = "") -> tuple[str | None, str, str]:
    """Flattens DRF's nested validation detail to the first (param, message, code)."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            param, message, code = _first_validation_error(value, name)
            return ((prefix or None) if key == "non_field_errors" else param), message, code
    if isinstance(detail, list) and detail:
        return _first_validation_error(detail[0], prefix)
    code = getattr(detail, "code", "invalid") or "invalid"
    return (prefix or None), str(detail), str(code)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    headers: dict[str, str] = {}
    if isinstance(exc, MengkaError):
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(exc.retry_after)
        if exc.replayed:
            headers["Idempotent-Replayed"] = "true"
        return Response({"error": exc.as_dict()}, status=exc.http_status, headers=headers)
    if isinstance(exc, Http404):
        return Response(error_body("invalid_request_error", "resource_missing", "No such object."), status=404)
    if isinstance(exc, DjangoPermissionDenied):
        return Response(error_body("permission_error", "permission_denied", "Not allowed."), status=403)
    if isinstance(exc, exceptions.ValidationError):
        param, message, code = _first_validation_error(exc.detail)
        return Response(error_body("invalid_request_error", code, message, param), status=400)
    if isinstance(exc, exceptions.ParseError):
        return Response(error_body("invalid_request_error", "parse_error", str(exc.detail)), status=400)
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return Response(error_body("invalid_request_error", "unsupported_media_type", str(exc.detail)), status=415)
    if isinstance(exc, exceptions.Throttled):
        wait = int(getattr(exc, "wait", None) or 1)
        return Response(
            error_body("rate_limit_error", "rate_limited", "Too many requests."),
            status=429,
            headers={"Retry-After": str(max(wait, 1))},
        )
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        return Response(
            error_body("authentication_error", "authentication_failed", str(exc.detail)),
            status=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    if isinstance(exc, exceptions.PermissionDenied):
        return Response(error_body("permission_error", "permission_denied", str(exc.detail)), status=403)
    if isinstance(exc, exceptions.NotFound):
        return Response(error_body("invalid_request_error", "resource_missing", str(exc.detail)), status=404)
    if isinstance(exc, exceptions.MethodNotAllowed):
        return Response(error_body("invalid_request_error", "method_not_allowed", str(exc.detail)), status=405)
    if isinstance(exc, exceptions.APIException):
        return Response(error_body("api_error", str(exc.default_code), str(exc.detail)), status=exc.status_code or 500)
    logger.exception("unhandled error in API view")
    return Response(
        error_body("api_error", "internal_error", "Something went wrong on our side."),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )
