from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from core.admin_base import ReadOnlyAdminMixin, ScopedAdmin, approval_request_page
from core.errors import MengkaError
from core.personal import email_hash, phone_digits, phone_hash
from core.scoping import operator_scope

from . import services
from .models import (
    ApiKey,
    Event,
    KeyDelivery,
    Merchant,
    MerchantApplication,
    SettlementAccount,
    Store,
    WebhookDelivery,
    WebhookEndpoint,
)

MERCHANT_FIELDS = ("code", "legal_name", "display_name", "category_code", "spend_category", "sponsor_bank", "status")
FREEZE_FIELDS = ("payouts_frozen", "frozen_reason")
TERMS_FIELDS = (
    "settlement_cycle",
    "risk_grade",
    "payouts_frozen",
    "frozen_reason",
    "unfreeze_note",
    "unfreeze_pending",
)


class MerchantForm(forms.ModelForm):  # type: ignore[type-arg]
    unfreeze_note = forms.CharField(
        label=_("Why release the payouts"),
        max_length=200,
        required=False,
        help_text=_(
            "Required when you untick payouts frozen: a second operator approves the release in the approval queue, "
            "and reads this."
        ),
    )

    class Meta:
        model = Merchant
        fields = (*MERCHANT_FIELDS, "settlement_cycle", "risk_grade", "payouts_frozen", "frozen_reason")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The page carries the freeze as the operator saw it, so what they changed is told from what changed since
        # (another operator's freeze or release meanwhile is not read as theirs).
        for name in FREEZE_FIELDS:
            self.fields[name].show_hidden_initial = True

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("payouts_frozen") and not str(data.get("frozen_reason") or "").strip():
            self.add_error("frozen_reason", _("Say why the payouts are frozen: the merchant's held batches show it."))
        unticked = "payouts_frozen" in self.changed_data and not data.get("payouts_frozen")
        if unticked and not str(data.get("unfreeze_note") or "").strip():
            self.add_error("unfreeze_note", _("Say why the payouts may be released: the second operator reads it."))
        return data


@admin.register(Merchant)
class MerchantAdmin(ScopedAdmin):
    """The sponsor bank's operators edit a merchant, its settlement terms included: cycle and risk grade as any other
    field; a freeze of its payouts at once; lifting a freeze only with a second operator's approval (unticking it makes
    a request in the approval queue, *Core → Approval requests*)."""

    scope_field = "sponsor_bank"
    form = MerchantForm
    list_display = (
        "code", "display_name", "legal_name", "category_code", "spend_category", "sponsor_bank", "status",
        "settlement_cycle", "risk_grade", "payouts_frozen",
    )  # fmt: skip
    list_filter = ("status", "spend_category", "settlement_cycle", "risk_grade", "payouts_frozen", "sponsor_bank")
    search_fields = ("code", "display_name", "legal_name")
    readonly_fields = ("unfreeze_pending",)
    fieldsets = (
        (None, {"fields": MERCHANT_FIELDS}),
        (_("Settlement terms"), {"fields": TERMS_FIELDS}),
    )

    @admin.display(description=_("release awaiting approval"))
    def unfreeze_pending(self, obj: Merchant) -> str:
        if obj.pk is None:
            return "-"
        request = services.unfreeze_requests_pending(obj.pk).select_related("maker").first()
        if request is None:
            return "-"
        text = _("asked by %(user)s: %(note)s") % {"user": request.maker, "note": request.reason or "-"}
        return format_html('<a href="{}">{}</a>', reverse("admin:core_approvalrequest_change", args=[request.pk]), text)

    def save_model(self, request: HttpRequest, obj: Merchant, form: forms.ModelForm, change: bool) -> None:  # type: ignore[override,type-arg]
        """Saves the form as any edit (audited), except the freeze: its fields keep what the database holds (read
        under the row's lock, so an edit from a page opened before a freeze neither undoes it nor repeats it), and
        what the operator changed of them goes through the freeze services."""
        if not change:
            super().save_model(request, obj, form, change)
            return
        wanted = (obj.payouts_frozen, obj.frozen_reason)
        current = Merchant.objects.select_for_update().only(*FREEZE_FIELDS).get(pk=obj.pk)
        obj.payouts_frozen, obj.frozen_reason = current.payouts_frozen, current.frozen_reason
        super().save_model(request, obj, form, change)
        if not set(FREEZE_FIELDS) & set(form.changed_data):
            return
        try:
            if wanted[0]:
                services.payouts_freeze(merchant_id=obj.pk, reason=wanted[1], actor=request.user)
            elif current.payouts_frozen:
                services.payouts_unfreeze_request(
                    merchant_id=obj.pk, note=form.cleaned_data.get("unfreeze_note", ""), actor=request.user
                )
                self.message_user(
                    request,
                    _("Payouts stay frozen until a second operator approves the release in the approval queue."),
                    messages.WARNING,
                )
        except MengkaError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        obj.refresh_from_db(fields=list(FREEZE_FIELDS))


@admin.register(ApiKey)
class ApiKeyAdmin(ScopedAdmin):
    """Keys are seen, revoked and rotated here, never shown: a rotated key goes to the merchant's contact by a one-time
    link (`KeyDelivery`). Merchants without an application get theirs from `create_merchant_key` at the console."""

    scope_field = "merchant__sponsor_bank"
    list_display = ("prefix", "merchant", "mode", "scope", "created_at", "expires_at", "revoked_at", "last_used_at")
    list_filter = ("mode", "scope")
    search_fields = ("prefix", "merchant__code")
    readonly_fields = ("merchant", "mode", "scope", "prefix", "created_at", "expires_at", "revoked_at", "last_used_at")
    exclude = ("key_hash",)
    actions = ["revoke", "rotate"]

    def has_add_permission(self, request: HttpRequest, *args: object) -> bool:
        return False

    @admin.action(description=_("Rotate: a new key now, the old one works 24 more hours"), permissions=["change"])
    def rotate(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for api_key in queryset:
            try:
                sent = services.api_key_rotate_and_deliver(api_key=api_key, overlap_hours=24, actor=request.user)
            except MengkaError as exc:
                self.message_user(request, f"{api_key.prefix}…: {exc.message}", messages.ERROR)
                continue
            self.message_user(
                request,
                _("New key %(new)s replaces %(old)s…; a one-time link to collect it was sent to %(to)s.")
                % {"old": api_key.prefix, "new": sent.prefixes, "to": sent.sent_to},
                messages.SUCCESS,
            )

    @admin.action(description=_("Revoke the selected keys"), permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        for api_key in queryset:
            services.api_key_revoke(api_key=api_key, actor=request.user, reason="admin")
        self.message_user(request, _("%(count)d keys revoked.") % {"count": queryset.count()}, messages.SUCCESS)


@admin.register(KeyDelivery)
class KeyDeliveryAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    """One-time links that took new keys to merchants: when sent, to whom (masked), whether collected. Never the
    link's token nor the key."""

    scope_field = "merchant__sponsor_bank"
    list_display = (
        "api_key",
        "merchant",
        "sent_to",
        "created_by",
        "created_at",
        "sent_at",
        "expires_at",
        "collected_at",
    )
    list_select_related = ("api_key", "merchant", "created_by")
    list_filter = ("merchant__sponsor_bank",)
    search_fields = ("merchant__code", "api_key__prefix")
    fields = ("api_key", "merchant", "sent_to", "created_by", "created_at", "sent_at", "expires_at", "collected_at")
    readonly_fields = fields


@admin.register(Store)
class StoreAdmin(ScopedAdmin):
    scope_field = "merchant__sponsor_bank"
    list_display = ("code", "name", "city", "merchant", "livemode")
    list_filter = ("livemode",)
    search_fields = ("code", "name", "merchant__code")


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ScopedAdmin):
    scope_field = "merchant__sponsor_bank"
    list_display = ("url", "merchant", "enabled", "livemode", "created_at")
    list_filter = ("enabled", "livemode")
    search_fields = ("url", "merchant__code")
    exclude = ("secret_encrypted",)
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}


@admin.register(Event)
class EventAdmin(ScopedAdmin):
    scope_field = "merchant__sponsor_bank"
    list_display = ("public_id", "type", "merchant", "livemode", "created_at")
    list_filter = ("type", "livemode")
    date_hierarchy = "created_at"  # the month the table is partitioned on: a month's page reads one partition
    search_fields = ("public_id", "merchant__code")
    readonly_fields = ("public_id", "merchant", "type", "payload_for_banks", "livemode", "created_at")
    exclude = ("payload",)

    # What the sponsor bank's people do not see of a payment event: the points the cardholder's bank paid, and the
    # merchant's own notes. Alliance operators see the payload as it was sent.
    HIDDEN_FROM_BANKS = frozenset({"points_earned", "points_reversed", "points_used", "metadata"})

    def get_readonly_fields(self, request: HttpRequest, obj: Event | None = None) -> Any:
        fields = super().get_readonly_fields(request, obj)
        if operator_scope(request.user).everything:
            return ["payload_as_sent" if name == "payload_for_banks" else name for name in fields]
        return fields

    def get_fields(self, request: HttpRequest, obj: Event | None = None) -> Any:
        return self.get_readonly_fields(request, obj)

    @admin.display(description=_("payload"))
    def payload_as_sent(self, obj: Event) -> str:
        return json.dumps(obj.payload, ensure_ascii=False, indent=2, sort_keys=True)

    @admin.display(description=_("payload"))
    def payload_for_banks(self, obj: Event) -> str:
        shown = {key: value for key, value in obj.payload.items() if key not in self.HIDDEN_FROM_BANKS}
        return json.dumps(shown, ensure_ascii=False, indent=2, sort_keys=True)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ScopedAdmin):
    scope_field = "endpoint__merchant__sponsor_bank"
    list_display = ("event", "endpoint", "status", "attempts", "response_code", "next_attempt_at", "delivered_at")
    list_filter = ("status",)
    date_hierarchy = "event_created_at"  # the month the table is partitioned on: a month's page reads one partition
    readonly_fields = (
        "event", "endpoint", "status", "attempts", "next_attempt_at", "response_code", "last_error", "created_at",
        "event_created_at", "delivered_at",
    )  # fmt: skip
    actions = ["resend"]

    @admin.action(description=_("Resend the selected deliveries"), permissions=["change"])
    def resend(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        count = 0
        for delivery in queryset.select_related("endpoint__merchant"):
            services.webhook_delivery_resend(delivery=delivery, actor=request.user)
            count += 1
        self.message_user(request, _("%(count)d deliveries queued again.") % {"count": count}, messages.SUCCESS)


@admin.register(MerchantApplication)
class MerchantApplicationAdmin(ScopedAdmin):
    """The sponsor bank's operators grade the risk, then approve (merchant, store, keys) or reject."""

    scope_field = "sponsor_bank"
    list_display = ("legal_name", "credit_code", "sponsor_bank", "category_code", "status", "risk_grade", "created_at")
    list_filter = ("status", "risk_grade")
    search_fields = ("legal_name", "display_name", "credit_code")
    # The contact person is personal data: shown masked, found only by the exact phone or email (keyed hashes).
    readonly_fields = (
        "legal_name", "display_name", "credit_code", "category_code", "spend_category", "sponsor_bank",
        "settlement_account_name", "settlement_bank_name", "settlement_account_last4", "contact_name_masked",
        "masked_contact_phone", "contact_email_masked", "store_name", "store_city", "status", "reviewed_by",
        "reviewed_at", "merchant", "created_at",
    )  # fmt: skip
    exclude = (
        "settlement_account_encrypted", "contact_name_encrypted", "contact_phone_encrypted", "contact_phone_hash",
        "contact_email_encrypted", "contact_email_hash",
    )  # fmt: skip
    actions = ["approve", "reject"]

    def has_add_permission(self, request: HttpRequest, *args: object) -> bool:
        return False  # applications come from the public form

    @admin.display(description=_("contact phone"))
    def masked_contact_phone(self, obj: MerchantApplication) -> str:
        return obj.masked_contact_phone

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        if "@" in term:
            return queryset.filter(contact_email_hash=email_hash(term)), False
        found, duplicates = super().get_search_results(request, queryset, search_term)
        if len(phone_digits(term)) >= 6 and not term.strip("+0123456789 -"):
            found = found | queryset.filter(contact_phone_hash=phone_hash(term))
        return found, duplicates

    @admin.action(description=_("Approve: create the merchant, its first store and keys"), permissions=["change"])
    def approve(self, request: HttpRequest, queryset: QuerySet[MerchantApplication]) -> None:
        for application in queryset:
            try:
                approved = services.merchant_application_approve(application=application, actor=request.user)
            except MengkaError as exc:
                self.message_user(request, f"{application.legal_name}: {exc.message}", messages.ERROR)
                continue
            self.message_user(
                request,
                _("%(merchant)s approved. One-time links to collect its keys %(keys)s were sent to %(to)s.")
                % {"merchant": approved.merchant.code, "keys": approved.keys.prefixes, "to": approved.keys.sent_to},
                messages.SUCCESS,
            )

    @admin.action(description=_("Reject"), permissions=["change"])
    def reject(self, request: HttpRequest, queryset: QuerySet[MerchantApplication]) -> None:
        for application in queryset:
            try:
                services.merchant_application_reject(application=application, actor=request.user)
            except MengkaError as exc:
                self.message_user(request, f"{application.legal_name}: {exc.message}", messages.ERROR)


@admin.register(SettlementAccount)
class SettlementAccountAdmin(ScopedAdmin):
    scope_field = "merchant__sponsor_bank"
    list_display = ("merchant", "account_name", "bank_name", "account_last4", "updated_at")
    search_fields = ("merchant__code", "account_name")
    readonly_fields = ("merchant", "account_name", "bank_name", "account_last4", "updated_at")
    exclude = ("account_encrypted",)
    change_list_template = "admin/merchants/settlementaccount/change_list.html"  # the scoped list, and the request link

    def has_add_permission(self, request: HttpRequest, *args: object) -> bool:
        return False  # set on approval, changed only through an approved change request

    def get_urls(self) -> list[Any]:
        change = self.admin_site.admin_view(self.request_change_view)
        return [path("request-change/", change, name="merchants_settlementaccount_request"), *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        may_request = request.user.has_perm(services.ACCOUNT_CHANGE_PERMISSION)  # type: ignore[union-attr]
        return super().changelist_view(request, {**(extra_context or {}), "may_request": may_request})

    def request_change_view(self, request: HttpRequest) -> HttpResponse:
        """Requests a change of settlement account; it applies once a second operator approves it in the approval
        queue."""
        if not request.user.has_perm(services.ACCOUNT_CHANGE_PERMISSION):  # type: ignore[union-attr]
            raise DjangoPermissionDenied
        scope = operator_scope(request.user)
        merchants = Merchant.objects.order_by("code")
        if not scope.everything:
            merchants = merchants.filter(sponsor_bank_id__in=scope.writable_bank_ids)
        return approval_request_page(
            self,
            request,
            SettlementChangeForm(request.POST or None, merchants=merchants),
            lambda data: services.settlement_change_request(
                merchant=data["merchant"],
                account_name=data["account_name"],
                bank_name=data["bank_name"],
                account_number=data["account_number"],
                reason=data["reason"],
                actor=request.user,
            ),
            title=_("Request a settlement account change"),
            template="admin/merchants/settlementaccount/request_change.html",
            done=_("Change requested: a second operator must approve it."),
        )


class SettlementChangeForm(forms.Form):
    merchant = forms.ModelChoiceField(label=_("Merchant"), queryset=Merchant.objects.none())
    account_name = forms.CharField(
        label=_("Account name"), max_length=200, help_text=_("The merchant's own legal name.")
    )
    bank_name = forms.CharField(label=_("Bank"), max_length=100)
    account_number = forms.CharField(label=_("Account number"), max_length=40)
    reason = forms.CharField(label=_("Reason"), widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args: Any, merchants: QuerySet[Merchant], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["merchant"].queryset = merchants  # type: ignore[attr-defined]
