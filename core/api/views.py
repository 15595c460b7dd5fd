"""The base of API views: JSON only, within the size limit; validated bodies and queries; idempotent POSTs.

Errors answer through `core.api.exception_handler`. Who the caller is (authentication, permissions, throttling) and
whose idempotency keys a request's are (`idempotency_scope`) are the subclass's to say.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Collection, Mapping
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.views import csrf, defaults
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import MengkaError
from core.idempotency import holding, run_idempotent

from .errors import error_body
from .inputs import check_path, check_query
from .parsers import StrictJSONParser

IDEMPOTENCY_HEADER = "HTTP_IDEMPOTENCY_KEY"


class RequestTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = "The request body is too large."
    default_code = "request_too_large"


class StrictAPIView(APIView):
    parser_classes = [StrictJSONParser]
    renderer_classes = [JSONRenderer]
    # The largest body taken, in bytes; None: DATA_UPLOAD_MAX_MEMORY_SIZE. A view taking file uploads sets its own.
    max_body_bytes: int | None = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        limit = self.max_body_bytes if self.max_body_bytes is not None else settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and length > limit:
            raise RequestTooLarge()
        super().initial(request, *args, **kwargs)
        # After authentication: an unauthenticated caller learns nothing but that it is one.
        check_path(kwargs)
        check_query(request.query_params)

    def idempotency_scope(self) -> str:
        """Whose the request's `Idempotency-Key` is: keys are unique within a scope, and stored under it.

        Asked only when a request sends the header, after authentication. Stored records are found by it, so what a
        subclass answers for a caller never changes."""
        raise NotImplementedError(f"{type(self).__name__} names no idempotency scope")

    def body(self, serializer_class: type[serializers.Serializer]) -> dict[str, Any]:
        """The validated JSON body (an empty body is an empty object)."""
        data = self.request.data if self.request.data is not None else {}
        serializer = serializer_class(data=data)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def query(self, serializer_class: type[serializers.Serializer]) -> dict[str, Any]:
        serializer = serializer_class(data=self.request.query_params.dict())
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def idempotent(
        self,
        operation: str,
        run: Callable[[str], tuple[int, dict[str, Any]]],
        *,
        secret_fields: Collection[str] = (),
    ) -> Response:
        """Runs a POST once per `Idempotency-Key`: the first status and body are stored and replayed.

        `run` gets the key to hand to the service (the header's, or a fresh one without it) and returns (status,
        body). The same key with another path or body is a 409; a key still running elsewhere is a 409 too.
        `secret_fields` names the body's fields shown only once (a signing secret): the stored record keeps them
        encrypted, and a replay answers with them decrypted.
        """
        header = self.request.META.get(IDEMPOTENCY_HEADER)
        if header is not None and not (header.isascii() and header.isprintable() and 0 < len(header) <= 255):
            raise MengkaError(
                "Idempotency-Key must be 1 to 255 printable ASCII characters.",
                code="invalid_idempotency_key",
                param="Idempotency-Key",
            )
        if header is None:
            status, body = run(f"api-{uuid.uuid4()}")
            return Response(body, status=status)
        ran: list[bool] = []

        def execute() -> dict[str, Any]:
            ran.append(True)
            with holding(header):  # this record stands for the service's: one record per request, not two
                status, body = run(header)
            return {"status": status, "body": body}

        outcome = run_idempotent(
            scope=self.idempotency_scope(),
            key=header,
            operation=operation,
            request={"path": self.request.path, "body": _canonical(self.request.data)},
            execute=execute,
            secret_fields=secret_fields,
        )
        response = Response(outcome["body"], status=outcome["status"])
        if not ran:
            response["Idempotent-Replayed"] = "true"
        return response


def _canonical(data: Any) -> Any:
    if isinstance(data, QueryDict):  # a multipart body: every value of a repeated field, in order
        return {str(key): [_canonical(value) for value in data.getlist(key)] for key in sorted(data)}
    if isinstance(data, UploadedFile):  # an upload stands for its name and content
        data.seek(0)
        digest = hashlib.sha256(data.read()).hexdigest()
        data.seek(0)
        return {"file": data.name, "size": data.size, "sha256": digest}
    if isinstance(data, Mapping):
        return {str(key): _canonical(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_canonical(value) for value in data]
    return data


@csrf_exempt
def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Unknown routes under the API answer in the API's error shape, never with an HTML page, whatever the method
    (CSRF-exempt: the API is not a browser form, and an unknown route is a 404, not a CSRF failure)."""
    return JsonResponse(
        error_body("invalid_request_error", "resource_missing", f"Unrecognised request URL ({request.path})."),
        status=404,
    )


# Django's error pages, in the API's error shape under /api/ (named as handler400/403/404/500 in the URLconf): a
# failure that happens outside a view's own handling — in middleware, say — still answers JSON there.


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(error_body("invalid_request_error", "bad_request", "Bad request."), status=400)
    return defaults.bad_request(request, exception)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(error_body("permission_error", "permission_denied", "Not allowed."), status=403)
    return defaults.permission_denied(request, exception)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return api_not_found(request)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return JsonResponse(error_body("api_error", "internal_error", "Something went wrong on our side."), status=500)
    return defaults.server_error(request)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """`CSRF_FAILURE_VIEW`: the portal and admin keep Django's page."""
    if _is_api(request):
        return JsonResponse(error_body("permission_error", "csrf_failed", "CSRF verification failed."), status=403)
    return csrf.csrf_failure(request, reason)
