from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from core.admin_base import ReadOnlyAdminMixin, ScopedAdmin, ScopedTabularInline, lift_signin_lockouts
from core.errors import MengkaError
from core.text import ascii_digits

from . import services
from .models import (
    BankOperator,
    BindingChallenge,
    BinRange,
    Card,
    Cardholder,
    CardProduct,
    Consent,
    ConsentEvent,
    ConsentText,
    LinkedAccount,
    MemberBank,
    PointsProgram,
)


@admin.register(MemberBank)
class MemberBankAdmin(ScopedAdmin):
    scope_field = "id"
    list_display = ("code", "name_zh", "name_en", "kind", "issuing_licence", "acquiring_licence", "status")
    list_filter = ("kind", "status", "acquiring_licence")
    search_fields = ("code", "name_zh", "name_en")


@admin.register(BankOperator)
class BankOperatorAdmin(ScopedAdmin):
    scope_field = "bank"
    list_display = ("user", "bank", "role", "created_at")
    list_filter = ("bank", "role")
    search_fields = ("user__username", "bank__code")
    autocomplete_fields = ("user",)


@admin.register(PointsProgram)
class PointsProgramAdmin(ScopedAdmin):
    scope_field = "bank"
    list_display = (
        "unit_code",
        "name",
        "name_en",
        "bank",
        "point_value_cny",
        "expiry_policy",
        "expiry_period",
        "active",
    )
    list_filter = ("bank", "active")
    search_fields = ("unit_code", "name", "name_en")


@admin.register(CardProduct)
class CardProductAdmin(ScopedAdmin):
    scope_field = "bank"
    list_display = ("code", "name", "name_en", "bank", "kind", "tier", "annual_fee", "active")
    list_filter = ("bank", "kind", "tier", "active")
    search_fields = ("code", "name", "name_en")


@admin.register(BinRange)
class BinRangeAdmin(ScopedAdmin):
    scope_field = "bank"
    list_display = ("prefix", "bank", "product", "card_length")
    list_filter = ("bank",)
    search_fields = ("prefix",)


class _NoAddInline(ScopedTabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # shown for reading; a card is acted on from its own page, through the services

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class CardInline(_NoAddInline):
    model = Card
    scope_field = "bank"
    fields = ("bank", "product", "bin", "last4", "expiry_month", "expiry_year", "status")
    readonly_fields = fields


class LinkedAccountInline(_NoAddInline):
    model = LinkedAccount
    scope_field = "bank"
    fields = ("bank", "kind", "masked_number", "currency", "status")
    readonly_fields = fields


class CardholderForm(forms.ModelForm):  # type: ignore[type-arg]
    """The name is stored encrypted and shown masked: an operator types a new one, never reads the old one here."""

    new_display_name = forms.CharField(
        label=_("new name"),
        required=False,
        max_length=100,
        help_text=_("Leave empty to keep the name. It is stored encrypted and shown masked."),
    )

    segment_tags = forms.CharField(
        label=_("segments"),
        required=False,
        max_length=400,
        help_text=_(
            "Comma-separated lowercase tags (letters, digits, _, -), at most ten, e.g. vip, golf. Tags named like a "
            "segment rule are the nightly segment job's: it adds and removes them. Targeted promotions read tags only "
            "while the cardholder consents to personalised offers; withdrawing that consent removes them all."
        ),
    )

    class Meta:
        model = Cardholder
        fields = ("verification_level", "segment_tags")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initial["segment_tags"] = ", ".join(self.instance.segment_tags or [])

    def clean_segment_tags(self) -> list[str]:
        try:
            return services.segment_tags_parse(self.cleaned_data.get("segment_tags") or "")
        except MengkaError as exc:
            raise forms.ValidationError(exc.message, code=exc.code) from exc

    def save(self, commit: bool = True) -> Any:
        name = (self.cleaned_data.get("new_display_name") or "").strip()
        if name:
            self.instance.display_name = name
        return super().save(commit)


@admin.register(Cardholder)
class CardholderAdmin(ScopedAdmin):
    """A bank operator sees the cardholders who hold a card at their bank, and in them only their bank's cards.
    Name, phone and national ID are shown masked; search finds a person only by the exact name, phone or ID number
    (through the keyed hashes), never by a part of one."""

    scope_field = "cards__bank"
    form = CardholderForm
    list_display = ("id", "name_masked", "masked_phone", "masked_national_id", "verification_level", "created_at")
    list_filter = ("verification_level",)
    search_fields = ("name_hash",)  # for the search box and autocomplete; `get_search_results` hashes the term
    fields = (
        "user",
        "name_masked",
        "new_display_name",
        "masked_phone",
        "masked_national_id",
        "verification_level",
        "segment_tags",
        "created_at",
    )
    readonly_fields = ("user", "name_masked", "masked_phone", "masked_national_id", "created_at")
    inlines = (CardInline, LinkedAccountInline)
    actions = ["lift_signin_lockout"]

    @admin.action(description=_("Lift the sign-in lockout of the selected cardholders"), permissions=["change"])
    def lift_signin_lockout(self, request: HttpRequest, queryset: QuerySet[Cardholder]) -> None:
        lift_signin_lockouts(self, request, [holder.user for holder in queryset.select_related("user")])

    @admin.display(description=_("phone"))
    def masked_phone(self, obj: Cardholder) -> str:
        return obj.masked_phone

    @admin.display(description=_("national ID"))
    def masked_national_id(self, obj: Cardholder) -> str:
        return obj.masked_national_id

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False  # cardholders register through the service, which encrypts and hashes

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        if ascii_digits(term) and len(term) == 11:
            return queryset.filter(phone_hash=services.phone_hash(term)), False
        if services.national_id_valid(term.upper()):
            return queryset.filter(national_id_hash=services.national_id_hash(term)), False
        return queryset.filter(name_hash=services.name_hash(term)), False


def _card_action(service: Any, done: str) -> Any:
    def action(modeladmin: CardAdmin, request: HttpRequest, queryset: QuerySet[Card]) -> None:
        changed = 0
        for card in queryset:
            try:
                service(card=card, actor=request.user, reason="operator, admin")
            except MengkaError as exc:
                modeladmin.message_user(request, f"{card}: {exc.message}", messages.WARNING)
            else:
                changed += 1
        modeladmin.message_user(request, f"{done}: {changed}", messages.SUCCESS)

    return action


@admin.register(Card)
class CardAdmin(ScopedAdmin):
    scope_field = "bank"
    list_display = ("token", "bank", "product", "bin", "last4", "status", "cardholder", "activated_at")
    list_filter = ("bank", "status")
    search_fields = ("token", "last4")
    readonly_fields = (
        "cardholder",
        "bank",
        "product",
        "token",
        "bin",
        "last4",
        "expiry_month",
        "expiry_year",
        "status",
        "created_at",
        "activated_at",
    )
    exclude = ("fingerprint",)
    actions = ("freeze", "unfreeze")

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False  # cards are bound only by their holder, with the issuer's code

    @admin.action(description=_("Freeze the selected cards"), permissions=["change"])
    def freeze(self, request: HttpRequest, queryset: QuerySet[Card]) -> None:
        _card_action(services.card_freeze, str(_("Frozen")))(self, request, queryset)

    @admin.action(description=_("Unfreeze the selected cards"), permissions=["change"])
    def unfreeze(self, request: HttpRequest, queryset: QuerySet[Card]) -> None:
        _card_action(services.card_unfreeze, str(_("Unfrozen")))(self, request, queryset)


@admin.register(LinkedAccount)
class LinkedAccountAdmin(ScopedAdmin):
    scope_field = "bank"
    list_display = ("reference", "bank", "kind", "masked_number", "currency", "status", "cardholder")
    list_filter = ("bank", "kind", "status")
    search_fields = ("reference",)
    readonly_fields = (
        "cardholder",
        "bank",
        "kind",
        "reference",
        "masked_number",
        "currency",
        "status",
        "created_at",
        "activated_at",
    )
    exclude = ("fingerprint",)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False


@admin.register(BindingChallenge)
class BindingChallengeAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    scope_field = "bank"
    list_display = ("id", "bank", "card", "linked_account", "status", "attempts", "expires_at", "created_at")
    list_select_related = ("bank", "card__bank", "linked_account__bank")
    list_filter = ("bank", "status")


@admin.register(ConsentText)
class ConsentTextAdmin(ScopedAdmin):
    alliance_only = True
    list_display = ("purpose", "version", "published_at")
    list_filter = ("purpose",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False if obj is not None else super().has_change_permission(request, obj)  # published texts are fixed

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        published = services.consent_text_publish(
            purpose=obj.purpose, text_zh=obj.text_zh, text_en=obj.text_en, actor=request.user
        )
        obj.pk, obj.version = published.pk, published.version

    def get_exclude(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("version",)


@admin.register(Consent)
class ConsentAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    scope_field = "cardholder__cards__bank"
    list_display = ("cardholder", "purpose", "granted", "text", "changed_at")
    list_select_related = ("cardholder", "text")
    list_filter = ("purpose", "granted")


@admin.register(ConsentEvent)
class ConsentEventAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    scope_field = "cardholder__cards__bank"
    list_display = ("cardholder", "purpose", "action", "text", "at")
    list_select_related = ("cardholder", "text")
    list_filter = ("purpose", "action")
