"""The merchant API's base view and idempotent POSTs.

Every view authenticates a merchant's API key, checks the key's scope, throttles per key, parses only JSON and
answers errors through `core.api.exception_handler`. Input serializers (`core.api.fields`) refuse unknown fields and
loosely typed values; lists page through `core.api.pagination`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from rest_framework import exceptions, serializers
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import error_body
from core.errors import MengkaError
from core.idempotency import holding, run_idempotent

from .authentication import ApiKeyAuthentication, ApiKeyRateThrottle, KeyScopePermission, MerchantPrincipal
from .models import ApiKey, Merchant

IDEMPOTENCY_HEADER = "HTTP_IDEMPOTENCY_KEY"
LIVEMODE_HELP = "false: made with a test key (sandbox data); true: live. A key sees only objects of its own mode."


class RequestTooLarge(exceptions.APIException):
    status_code = 413
    default_detail = "The request body is too large."
    default_code = "request_too_large"


class StrictJSONParser(JSONParser):
    """JSON whose nesting is too deep for the decoder is a parse error like any other, not a crash."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - nested too deeply.") from None


class MerchantAPIView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [KeyScopePermission]
    throttle_classes = [ApiKeyRateThrottle]
    parser_classes = [StrictJSONParser]
    renderer_classes = [JSONRenderer]

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and length > limit:
            raise RequestTooLarge()
        super().initial(request, *args, **kwargs)

    @property
    def merchant(self) -> Merchant:
        principal = self.request.user
        assert isinstance(principal, MerchantPrincipal)
        return principal.merchant

    @property
    def api_key(self) -> ApiKey:
        assert isinstance(self.request.auth, ApiKey)
        return self.request.auth

    @property
    def actor(self) -> MerchantPrincipal:
        """Who acts, for the audit log of the services this view calls: the merchant through this key."""
        principal = self.request.user
        assert isinstance(principal, MerchantPrincipal)
        return principal

    @property
    def livemode(self) -> bool:
        """The calling key's mode: everything it makes is of this mode and it sees nothing of the other."""
        return self.api_key.livemode

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
    ) -> Response:
        """Runs a POST once per `Idempotency-Key`: the first status and body are stored and replayed.

        `run` gets the key to hand to the service (the header's, or a fresh one without it) and returns (status,
        body). The same key with another path or body is a 409; a key still running elsewhere is a 409 too.
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

        # A test key's idempotency keys never meet a live key's; live keeps the scope it always had.
        scope = f"api:{self.merchant.pk}" if self.livemode else f"api:{self.merchant.pk}:test"
        outcome = run_idempotent(
            scope=scope,
            key=header,
            operation=operation,
            request={"path": self.request.path, "body": _canonical(self.request.data)},
            execute=execute,
        )
        response = Response(outcome["body"], status=outcome["status"])
        if not ran:
            response["Idempotent-Replayed"] = "true"
        return response


def _canonical(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {str(key): _canonical(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_canonical(value) for value in data]
    return data


def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Unknown routes under the API answer in the API's error shape, never with an HTML page."""
    return JsonResponse(
        error_body("invalid_request_error", "resource_missing", f"Unrecognised request URL ({request.path})."),
        status=404,
    )
