from __future__ import annotations

from django.contrib import admin

from core.admin_base import ReadOnlyAdminMixin, ScopedAdmin, ScopedTabularInline

from .models import Channel, PaymentAttempt, PaymentIntent, Refund

PAYMENT_BANKS = ("issuer", "acquirer", "merchant__sponsor_bank")


@admin.register(Channel)
class ChannelAdmin(ScopedAdmin):
    scope_field = "acquirer"
    list_display = ("code", "name", "kind", "acquirer", "connector", "fee_percent", "fee_fixed", "cutoff", "enabled")
    list_filter = ("kind", "enabled", "acquirer")
    search_fields = ("code", "name")


class AttemptInline(ReadOnlyAdminMixin, ScopedTabularInline):
    model = PaymentAttempt
    scope_field = tuple(f"intent__{path}" for path in PAYMENT_BANKS)
    extra = 0
    fields = ("sequence", "channel", "reference", "status", "amount", "error_code", "latency_ms", "resolved_at")
    readonly_fields = fields


class RefundInline(ReadOnlyAdminMixin, ScopedTabularInline):
    model = Refund
    scope_field = tuple(f"intent__{path}" for path in PAYMENT_BANKS)
    extra = 0
    fields = ("public_id", "amount", "status", "reason", "points_reversed", "created_at", "completed_at")
    readonly_fields = fields


@admin.register(PaymentIntent)
class PaymentIntentAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    scope_field = PAYMENT_BANKS
    list_display = (
        "public_id",
        "merchant",
        "amount",
        "currency",
        "status",
        "method",
        "channel",
        "issuer",
        "acquirer",
        "business_date",
        "created_at",
    )
    list_filter = ("status", "method", "currency", "channel", "issuer", "acquirer")
    search_fields = ("public_id", "merchant_reference", "merchant__code")
    date_hierarchy = "created_at"
    inlines = [AttemptInline, RefundInline]


@admin.register(PaymentAttempt)
class PaymentAttemptAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    scope_field = tuple(f"intent__{path}" for path in PAYMENT_BANKS)
    list_display = ("reference", "channel", "status", "amount", "currency", "error_code", "latency_ms", "created_at")
    list_filter = ("status", "channel")
    search_fields = ("reference", "channel_reference")


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    scope_field = tuple(f"intent__{path}" for path in PAYMENT_BANKS)
    list_display = ("public_id", "intent", "amount", "status", "points_reversed", "created_at")
    list_filter = ("status",)
    search_fields = ("public_id", "intent__public_id", "reference")
