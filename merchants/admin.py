from __future__ import annotations

from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from core.admin_base import ScopedAdmin

from . import services
from .models import ApiKey, Event, Merchant, Store, WebhookDelivery, WebhookEndpoint


@admin.register(Merchant)
class MerchantAdmin(ScopedAdmin):
    scope_field = "sponsor_bank"
    list_display = ("code", "display_name", "legal_name", "category_code", "spend_category", "sponsor_bank", "status")
    list_filter = ("status", "spend_category", "sponsor_bank")
    search_fields = ("code", "display_name", "legal_name")


@admin.register(ApiKey)
class ApiKeyAdmin(ScopedAdmin):
    """Keys are issued by `create_merchant_key` (shown once); here they are only seen and revoked."""

    scope_field = "merchant__sponsor_bank"
    list_display = ("prefix", "merchant", "mode", "scope", "created_at", "expires_at", "revoked_at", "last_used_at")
    list_filter = ("mode", "scope")
    search_fields = ("prefix", "merchant__code")
    readonly_fields = ("merchant", "mode", "scope", "prefix", "created_at", "expires_at", "revoked_at", "last_used_at")
    exclude = ("key_hash",)
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest, *args: object) -> bool:
        return False

    @admin.action(description=_("Revoke the selected keys"), permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for api_key in queryset:
            services.api_key_revoke(api_key=api_key, actor=request.user, reason="admin")
        self.message_user(request, _("%(count)d keys revoked.") % {"count": queryset.count()}, messages.SUCCESS)


@admin.register(Store)
class StoreAdmin(ScopedAdmin):
    scope_field = "merchant__sponsor_bank"
    list_display = ("code", "name", "city", "merchant")
    search_fields = ("code", "name", "merchant__code")


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ScopedAdmin):
    scope_field = "merchant__sponsor_bank"
    list_display = ("url", "merchant", "enabled", "created_at")
    list_filter = ("enabled",)
    search_fields = ("url", "merchant__code")
    exclude = ("secret_encrypted",)
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}


@admin.register(Event)
class EventAdmin(ScopedAdmin):
    scope_field = "merchant__sponsor_bank"
    list_display = ("public_id", "type", "merchant", "created_at")
    list_filter = ("type",)
    search_fields = ("public_id", "merchant__code")
    readonly_fields = ("public_id", "merchant", "type", "payload", "created_at")


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ScopedAdmin):
    scope_field = "endpoint__merchant__sponsor_bank"
    list_display = ("event", "endpoint", "status", "attempts", "response_code", "next_attempt_at", "delivered_at")
    list_filter = ("status",)
    readonly_fields = (
        "event", "endpoint", "status", "attempts", "next_attempt_at", "response_code", "last_error", "created_at",
        "delivered_at",
    )  # fmt: skip
    actions = ["resend"]

    @admin.action(description=_("Resend the selected deliveries"), permissions=["change"])
    def resend(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        count = 0
        for delivery in queryset.select_related("endpoint__merchant"):
            services.webhook_delivery_resend(delivery=delivery, actor=request.user)
            count += 1
        self.message_user(request, _("%(count)d deliveries queued again.") % {"count": count}, messages.SUCCESS)
