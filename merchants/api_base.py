"""The merchant API's base view: every request is a merchant's, through one of its API keys.

`MerchantAPIView` is core's `StrictAPIView` (JSON only, strict bodies and queries, idempotent POSTs, errors through
`core.api.exception_handler`) with what is the merchants': bearer-key authentication, the key's scope, per-key
throttling, the request's merchant, key, actor and mode, and the scope its idempotency keys are stored under.
"""

from __future__ import annotations

from core.api.views import StrictAPIView

from .authentication import ApiKeyAuthentication, ApiKeyRateThrottle, KeyScopePermission, MerchantPrincipal
from .models import ApiKey, Merchant

LIVEMODE_HELP = "false: made with a test key (sandbox data); true: live. A key sees only objects of its own mode."


class MerchantAPIView(StrictAPIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [KeyScopePermission]
    throttle_classes = [ApiKeyRateThrottle]

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

    def idempotency_scope(self) -> str:
        # A test key's idempotency keys never meet a live key's; live keeps the scope it always had. Stored keys are
        # found by these strings: they never change.
        return f"api:{self.merchant.pk}" if self.livemode else f"api:{self.merchant.pk}:test"
