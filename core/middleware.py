from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from .requestid import accept_request_id, reset_request_id, set_request_id

REQUEST_ID_HEADER = "Request-Id"


class RequestIdMiddleware:
    """Gives every request an id (the caller's X-Request-Id if sane), logs with it and returns it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = accept_request_id(request.headers.get("X-Request-Id"))
        request.request_id = request_id  # type: ignore[attr-defined]
        token = set_request_id(request_id)
        try:
            response = self.get_response(request)
        finally:
            reset_request_id(token)
        response[REQUEST_ID_HEADER] = request_id
        return response
