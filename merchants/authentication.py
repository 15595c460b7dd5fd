"""The merchant API's authentication (`Authorization: Bearer sk_...`), key-scope permission and throttle."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from core.counters import window_count_if_shared
from core.redis_fallback import RedisFallback

from .models import ApiKey, Merchant
from .selectors import api_key_by_hash
from .services import api_key_hash, api_key_touch

MAX_KEY_LENGTH = 200
_UNCOUNTED = RedisFallback("rate_limit", "no rate limit: API requests are let through uncounted")


class MerchantPrincipal:
    """The caller: a merchant acting through one API key. Not a Django user."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, api_key: ApiKey) -> None:
        self.api_key = api_key
        self.merchant: Merchant = api_key.merchant

    def __str__(self) -> str:
        return f"{self.merchant.code} ({self.api_key.prefix}…)"

    @property
    def audit_label(self) -> str:
        """The actor of what this key does, in the audit log: the key (id and prefix) and its merchant."""
        return f"api_key #{self.api_key.pk} {self.api_key.prefix}… ({self.merchant.code})"


class ApiKeyAuthentication(BaseAuthentication):
    """Looks the key up by its SHA-256: the comparison is on a digest the caller cannot steer, never on the key."""

    def authenticate(self, request: Request) -> tuple[MerchantPrincipal, ApiKey] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            raise exceptions.NotAuthenticated(_("Provide your API key as 'Authorization: Bearer <key>'."))
        scheme, _sep, raw_key = header.partition(" ")
        raw_key = raw_key.strip()
        if scheme.lower() != "bearer" or not raw_key or len(raw_key) > MAX_KEY_LENGTH:
            raise exceptions.AuthenticationFailed(_("Invalid Authorization header: use 'Bearer <key>'."))
        api_key = api_key_by_hash(key_hash=api_key_hash(raw_key))
        if api_key is None:
            raise exceptions.AuthenticationFailed(_("Invalid API key (unknown, revoked or expired)."))
        api_key_touch(api_key=api_key)
        return MerchantPrincipal(api_key), api_key

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"


class KeyScopePermission(BasePermission):
    """Read keys may only read."""

    message = gettext_lazy("This API key is read-only.")

    def has_permission(self, request: Request, view: Any) -> bool:
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            return False
        return request.method in SAFE_METHODS or api_key.scope == ApiKey.Scope.WRITE


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Requests per API key in fixed windows of the rate's period (`API_RATE_PER_KEY`, e.g. 100/second), counted
    in the shared cache (Redis when configured) by one atomic increment: racing processes never lose a count, and no
    request history is read and rewritten on every call (DRF's default keeps a list of timestamps per key). The
    refusal's Retry-After is the time to the next window. While Redis cannot be reached the limit is open: requests
    pass uncounted, with a warning logged (`core.redis_fallback`), rather than fail or be counted per process."""

    scope = "api_key"
    num_requests: int  # set from the rate by SimpleRateThrottle
    duration: int

    def allow_request(self, request: Request, view: Any) -> bool:
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        self.now = self.timer()
        window = int(self.now // self.duration)
        self.window_ends = (window + 1) * self.duration
        count = window_count_if_shared(f"{key}:{window}", int(self.duration), fallback=_UNCOUNTED)
        return count is None or count <= self.num_requests

    def wait(self) -> float:
        return max(self.window_ends - self.now, 0.0)

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if not isinstance(request.auth, ApiKey):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "merchants.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "A secret key: sk_test_… or sk_live_…"}
