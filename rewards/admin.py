"""Ledger tables are read-only in the admin; adjustments are requested from the ledger accounts' page and posted once a
second operator approves them in the approval queue (core.approvals). Benefits are
edited while draft and published once a second operator approves the request in the same queue; vouchers are
read-only. Merchants' promotions are set through
the API and only read here, with their cost and budget left; the co-funding bank approves or rejects its share, and
the sponsor bank (or the alliance) may pause one."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import F, Q, QuerySet, Value
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from core.admin_base import PartitionedAdmin, ReadOnlyAdminMixin, ScopedAdmin, approval_request_page
from core.admin_display import MoneyField
from core.errors import MengkaError
from core.models import ApprovalRequest
from core.scoping import ScopePath, operator_scope
from core.text import id_or_none
from members.models import PointsProgram

from . import selectors, services
from .models import (
    Account,
    Benefit,
    Entry,
    ExchangePolicy,
    Hold,
    LedgerTransaction,
    Lot,
    Promotion,
    PromotionUse,
    Seal,
    Voucher,
)
from .services.adjustments import ADJUST_PERMISSION


@admin.register(Account)
class AccountAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    scope_field = "bank"
    list_display = ("id", "owner_kind", "owner_id", "purpose", "unit", "shard", "posted", "held", "statement_link")
    list_filter = ("owner_kind", "purpose", "unit")
    search_fields = ("=owner_id", "unit")

    @admin.display(description=_("statement"))
    def statement_link(self, obj: Account) -> str:
        return format_html('<a href="{}">{}</a>', reverse("admin:rewards_account_statement", args=[obj.pk]), _("view"))

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.statement_view)
        adjust = self.admin_site.admin_view(self.adjust_view)
        return [
            path("<int:account_id>/statement/", view, name="rewards_account_statement"),
            path("adjust/", adjust, name="rewards_account_adjust"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        may_adjust = request.user.has_perm(ADJUST_PERMISSION)  # type: ignore[union-attr]
        return super().changelist_view(request, {**(extra_context or {}), "may_adjust": may_adjust})

    def adjust_view(self, request: HttpRequest) -> HttpResponse:
        """Requests a points adjustment; it posts once a second operator approves it in the approval queue."""
        if not request.user.has_perm(ADJUST_PERMISSION):  # type: ignore[union-attr]
            raise PermissionDenied
        scope = operator_scope(request.user)
        programs = PointsProgram.objects.order_by("id")
        if not scope.everything:
            programs = programs.filter(bank_id__in=scope.writable_bank_ids)
        initial = {"cardholder": id_or_none(request.GET.get("cardholder"))}
        return approval_request_page(
            self,
            request,
            AdjustmentForm(request.POST or None, programs=programs, initial=initial),
            lambda data: services.adjustment_request(
                cardholder_id=data["cardholder"],
                program=data["program"],
                amount=data["amount"],
                reason=data["reason"],
                requested_by=request.user,  # type: ignore[arg-type]
            ),
            title=_("Request a points adjustment"),
            template="admin/rewards/adjust.html",
            done=_("Adjustment requested: a second operator must approve it."),
        )

    def statement_view(self, request: HttpRequest, account_id: int) -> HttpResponse:
        account = self.get_queryset(request).filter(pk=account_id).first()
        if account is None or not self.has_view_permission(request, account):
            raise Http404("No such account in your scope.")
        page = selectors.account_statement(account_id=account.pk, after_id=id_or_none(request.GET.get("after")))
        context = {
            **self.admin_site.each_context(request),
            "title": _("Statement of %(account)s") % {"account": account},
            "account": account,
            "page": page,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/rewards/statement.html", context)


class AdjustmentForm(forms.Form):
    """A points adjustment as an operator asks for it; the service checks it (card at the bank, bounds) and the
    approval checks it again before it posts."""

    cardholder = forms.IntegerField(label=_("cardholder (id)"), min_value=1)
    program = forms.ModelChoiceField(label=_("program"), queryset=PointsProgram.objects.none())
    amount = forms.IntegerField(label=_("points (signed: negative to take away)"))
    reason = forms.CharField(label=_("reason"), widget=forms.Textarea(attrs={"rows": 3, "cols": 60}))

    def __init__(self, *args: Any, programs: models.QuerySet[PointsProgram], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["program"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = programs
        field.label_from_instance = lambda program: program.local_name  # type: ignore[method-assign,assignment]


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(ReadOnlyAdminMixin, PartitionedAdmin):
    # On Citus the entries and their accounts are distributed beside this coordinator table: the scope reads the
    # transaction ids of the bank's entries in a subquery of their own, joined to their accounts by spread too.
    scope_field = ScopePath("entries__account__bank", Q(account__spread=F("spread")))
    list_display = ("id", "kind", "idempotency_key", "points", "reversed_points", "actor_label", "seal", "created_at")
    list_filter = ("kind",)
    date_hierarchy = "created_at"  # a month picked reads that month's partition only
    search_fields = ("=key__idempotency_key",)  # by the key's row (its primary key), then the transaction by id
    archived_table = "rewards_ledgertransaction"
    archived_note = _(
        "Ledger transactions made before %(month)s have been archived and are no longer listed here; their points"
        " stay in the accounts' balances and statements."
    )


@admin.register(Entry)
class EntryAdmin(ReadOnlyAdminMixin, PartitionedAdmin):
    scope_field = "account__bank"
    archived_table = "rewards_entry"
    archived_note = _(
        "Ledger entries made before %(month)s have been archived and are no longer listed here; an account's"
        " statement still shows them."
    )
    list_display = ("id", "transaction", "account", "unit", "amount", "balance_after", "created_at")
    list_select_related = ("account", "transaction")
    date_hierarchy = "created_at"  # a month picked reads that month's partition only
    # A currency unit's amounts are ten-thousandths (CNY 1 = 10000); a points unit's are points, shown as they are.
    money_fields = {"amount": MoneyField("unit", absolute=4), "balance_after": MoneyField("unit", absolute=4)}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Entry]:
        # On Citus, where both are distributed by spread, entries join their accounts shard by shard.
        return super().get_queryset(request).filter(account__spread=F("spread"))


@admin.register(Lot)
class LotAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    scope_field = "account__bank"
    list_display = ("id", "account", "amount", "remaining", "earned_on", "expires_on")


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    scope_field = "account__bank"
    list_display = ("id", "account", "amount", "posted_amount", "status", "expires_at")
    list_filter = ("status",)


@admin.register(Seal)
class SealAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    alliance_only = True
    list_display = ("id", "transaction_count", "entry_count", "hash", "created_at")


class ExchangePolicyForm(forms.ModelForm):  # type: ignore[type-arg]
    """Shows by the field what the service refuses (a start in the past, a version in force, a rate out of range); the
    service checks again, under the row's lock, when it writes."""

    class Meta:
        model = ExchangePolicy
        fields = ("fee_rate", "minimum_points", "effective_from")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        starts = self.fields.get("effective_from")  # absent on the read-only page of a version in force
        if starts is not None:
            starts.required = False
            starts.help_text = _("Leave empty to take effect at once; otherwise a moment from now on.")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        fee_rate, minimum = data.get("fee_rate"), data.get("minimum_points")
        if fee_rate is not None and minimum is not None:
            try:
                services.exchange_policy_check(
                    policy_id=self.instance.pk,
                    fee_rate=fee_rate,
                    minimum_points=minimum,
                    effective_from=data.get("effective_from"),
                )
            except MengkaError as exc:
                self.add_error(exc.param if exc.param in self.fields else None, exc.message)
        return data


@admin.register(ExchangePolicy)
class ExchangePolicyAdmin(ScopedAdmin):
    """The alliance's exchange terms, one version per row: the one in force is the latest that has started. A version
    in force is shown read-only and cannot be deleted; a change is a new version."""

    alliance_only = True
    form = ExchangePolicyForm
    list_display = ("effective_from", "fee_rate", "minimum_points", "in_force", "created_by", "created_at")
    list_select_related = ("created_by",)
    readonly_fields = ("created_by", "created_at")

    @admin.display(description=_("in force"), boolean=True)
    def in_force(self, obj: ExchangePolicy) -> bool:
        return obj.pk == self._in_force_id

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        self._in_force_id = self._current_id()  # once per page, not once per row
        return super().changelist_view(request, extra_context)

    def _current_id(self) -> int | None:
        try:
            return services.exchange_policy_in_force().pk
        except MengkaError:
            return None

    def _started(self, obj: models.Model | None) -> bool:
        return isinstance(obj, ExchangePolicy) and obj.effective_from <= timezone.now()

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return not self._started(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return not self._started(obj) and super().has_delete_permission(request, obj)

    def get_actions(self, request: HttpRequest) -> Any:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one at a time, through the service that refuses versions in force
        return actions

    def save_model(self, request: HttpRequest, obj: models.Model, form: Any, change: bool) -> None:
        assert isinstance(obj, ExchangePolicy)
        saved = services.exchange_policy_save(
            policy_id=obj.pk if change else None,
            fee_rate=obj.fee_rate,
            minimum_points=obj.minimum_points,
            effective_from=form.cleaned_data.get("effective_from"),
            actor=request.user,  # type: ignore[arg-type]
        )
        obj.pk, obj.effective_from, obj.created_by_id = saved.pk, saved.effective_from, saved.created_by_id

    def delete_model(self, request: HttpRequest, obj: models.Model) -> None:
        services.exchange_policy_delete(policy_id=obj.pk, actor=request.user)  # type: ignore[arg-type]


class BenefitForm(forms.ModelForm):  # type: ignore[type-arg]
    """Refuses in the form what does not fit together (`services.benefit_check`), next to its field."""

    class Meta:
        model = Benefit
        fields = (
            "bank",
            "funding_merchant",
            "kind",
            "title_zh",
            "title_en",
            "description_zh",
            "description_en",
            "image",
            "pricing",
            "price_program",
            "price_points",
            "price_cny_units",
            "value_cny_units",
            "eligible_banks",
            "eligible_products",
            "eligible_tiers",
            "stock_total",
            "limit_per_month",
            "limit_per_year",
            "limit_per_card",
            "valid_from",
            "valid_until",
            "terms_zh",
            "terms_en",
            "merchant",
            "stores",
            "voucher_valid_days",
            "cancel_window_hours",
            "return_stock_on_expiry",
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        bank = data.get("bank")
        try:
            services.benefit_check(
                bank_id=bank.pk if bank is not None else None,
                funding_merchant=data.get("funding_merchant"),
                kind=data.get("kind", ""),
                pricing=data.get("pricing", ""),
                price_program=data.get("price_program"),
                price_points=data.get("price_points"),
                price_cny_units=data.get("price_cny_units"),
                merchant=data.get("merchant"),
                stores=data.get("stores"),
                valid_from=data.get("valid_from"),
                valid_until=data.get("valid_until"),
            )
        except MengkaError as exc:
            field = exc.param if exc.param in self.fields else None
            self.add_error(field, exc.message)
        return data


@admin.register(Benefit)
class BenefitAdmin(ScopedAdmin):
    """A bank's benefits (and those of the merchants it sponsors): edited while draft; one operator asks to publish a
    draft (its page links to the request form), and it is published once a second operator approves the request in the
    approval queue. Stock, redemptions and cost (the CNY value of the points taken) are shown."""

    scope_field = "bank"
    form = BenefitForm
    list_display = (
        "id",
        "title_zh",
        "title_en",
        "kind",
        "pricing",
        "status",
        "bank",
        "stock_left",
        "stock_total",
        "redeemed_count",
        "cost_units",
        "valid_until",
    )
    list_select_related = ("bank",)
    list_filter = ("status", "kind", "pricing")
    search_fields = ("title_zh", "title_en")
    filter_horizontal = ("eligible_banks", "eligible_products", "stores")
    readonly_fields = ("status", "publication", "stock_left", "redeemed_count", "cost_units")
    money_fields = {
        "cost_units": MoneyField("CNY", absolute=4),
        "price_cny_units": MoneyField("CNY", absolute=4),
        "value_cny_units": MoneyField("CNY", absolute=4),
    }
    actions = ("withdraw",)

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        if isinstance(obj, Benefit) and obj.status != Benefit.Status.DRAFT:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: models.Model, form: Any, change: bool) -> None:
        assert isinstance(obj, Benefit)
        if not change or "stock_total" in form.changed_data:  # a draft: nothing has been taken yet
            obj.stock_left = obj.stock_total
        super().save_model(request, obj, form, change)

    @admin.display(description=_("publication"))
    def publication(self, obj: Benefit) -> str:
        """The request waiting in the approval queue, the one that published it, or the link to ask (a draft)."""
        if obj.pk is None:
            return "-"
        request = (
            services.benefit_publish_requests_pending(obj.pk).select_related("maker").first()
            if obj.status == Benefit.Status.DRAFT
            else ApprovalRequest.objects.filter(
                kind=services.BENEFIT_PUBLISH, status=ApprovalRequest.Status.APPROVED, result_id=str(obj.pk)
            )
            .select_related("maker", "checker")
            .order_by("-id")
            .first()
        )
        if request is not None:
            if request.status == ApprovalRequest.Status.PENDING:
                text = _("awaiting approval: asked by %(maker)s") % {"maker": request.maker}
            else:
                text = _("asked by %(maker)s, approved by %(checker)s") % {
                    "maker": request.maker,
                    "checker": request.checker,
                }
            return format_html(
                '<a href="{}">{}</a>', reverse("admin:core_approvalrequest_change", args=[request.pk]), text
            )
        if obj.status == Benefit.Status.DRAFT:
            url = reverse("admin:rewards_benefit_request_publish", args=[obj.pk])
            return format_html('<a href="{}">{}</a>', url, _("Ask to publish"))
        return "-"

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.request_publish_view)
        return [
            path("<int:benefit_id>/request-publish/", view, name="rewards_benefit_request_publish"),
            *super().get_urls(),
        ]

    def request_publish_view(self, request: HttpRequest, benefit_id: int) -> HttpResponse:
        """Asks to publish a draft, saying why; it is published once a second operator approves the request in the
        approval queue."""
        if not request.user.has_perm(services.PUBLISH_PERMISSION):  # type: ignore[union-attr]
            raise PermissionDenied
        benefit = self.get_queryset(request).filter(pk=benefit_id).first()
        if benefit is None or not self._writable(request, benefit):
            raise Http404("No such benefit in your scope.")
        return approval_request_page(
            self,
            request,
            PublishRequestForm(request.POST or None),
            lambda data: services.benefit_request_publish(
                benefit_id=benefit.pk, operator=request.user, reason=data["reason"]
            ),
            title=_("Ask to publish %(benefit)s") % {"benefit": benefit},
            template="admin/rewards/benefit/request_publish.html",
            done=_("Publishing requested: a second operator must approve it."),
            benefit=benefit,
        )

    @admin.action(description=_("Withdraw the selected benefits"))
    def withdraw(self, request: HttpRequest, queryset: models.QuerySet[Any]) -> None:
        for benefit in queryset:
            if not self._writable(request, benefit):
                messages.error(request, _("Benefit %(id)s is outside your scope.") % {"id": benefit.pk})
                continue
            try:
                services.benefit_withdraw(benefit_id=benefit.pk, operator=request.user)
            except MengkaError as exc:
                messages.error(request, f"#{benefit.pk}: {exc.message}")
            else:
                messages.success(request, _("Benefit %(id)s updated.") % {"id": benefit.pk})


class PublishRequestForm(forms.Form):
    reason = forms.CharField(label=_("reason"), widget=forms.Textarea(attrs={"rows": 3, "cols": 60}))


@admin.register(Voucher)
class VoucherAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    """Redemptions of the bank's benefits. The code is never shown (only its hint), nor the card or points of other
    banks the holder paid with: the cost is their CNY value."""

    scope_field = "benefit__bank"
    list_display = ("id", "benefit", "code_hint", "state", "cost_units", "issued_at", "expires_at", "redeemed_at")
    list_select_related = ("benefit",)
    list_filter = ("state",)
    fields = (
        "benefit",
        "code_hint",
        "state",
        "cost_units",
        "issued_at",
        "expires_at",
        "redeemed_at",
        "redeemed_store",
        "cancelled_at",
        "expired_at",
    )
    money_fields = {"cost_units": MoneyField("CNY", absolute=4)}


# --- promotions ------------------------------------------------------------------------------------------------------

# A promotion is in the scope of its merchant's sponsor bank and of the bank that co-funds it.
PROMOTION_BANKS = ("merchant__sponsor_bank", "cofunder")


@admin.register(Promotion)
class PromotionAdmin(ScopedAdmin):
    """Merchants set their promotions' terms through the API: here every field is read-only. Operators see the cost
    so far and the budget left; the co-funding bank's operators approve or reject its share (until then the engine
    does not apply the promotion); the sponsor bank's operators, or the alliance's, pause one (abuse, a dispute)."""

    scope_field = PROMOTION_BANKS
    list_display = (
        "id",
        "merchant",
        "name",
        "kind",
        "status",
        "schedule",
        "budget",
        "committed",
        "budget_left",
        "uses",
        "cofunding_state",
        "uses_link",
    )
    list_select_related = ("merchant", "cofunder")
    list_filter = ("kind", "status", "cofunding", "livemode")
    search_fields = ("=public_id", "name", "merchant__code")
    list_per_page = 50
    fieldsets = (
        (None, {"fields": ("public_id", "merchant", "livemode", "name", "description", "kind", "currency", "status")}),
        (
            _("Benefit"),
            {
                "fields": (
                    "amount_off",
                    "percent_off",
                    "max_discount",
                    "multiplier",
                    ("random_min", "random_max", "random_mean"),
                    "cashback_rate",
                    "frequency_count",
                    "reward_benefit",
                )
            },
        ),
        (
            _("Conditions"),
            {
                "fields": (
                    "min_spend",
                    "stores",
                    "categories",
                    "card_banks",
                    "card_products",
                    "card_tiers",
                    "methods",
                    "weekdays",
                    ("hour_from", "hour_to"),
                    "first_purchase",
                    "segment_tags",
                )
            },
        ),
        (
            _("Budget"),
            {
                "fields": (
                    "budget",
                    "committed",
                    "budget_left",
                    "uses",
                    "max_uses",
                    "per_cardholder_daily",
                    "per_cardholder",
                    "stacking",
                    "priority",
                    "starts_at",
                    "ends_at",
                )
            },
        ),
        (
            _("Co-funding"),
            {"fields": ("cofunder", "cofunder_share", "cofunding", "cofunding_decided_by", "cofunding_decided_at")},
        ),
        (None, {"fields": ("uses_link", "created_at", "updated_at")}),
    )
    readonly_fields = ("budget_left", "uses_link", "public_id", "created_at", "updated_at")
    money_fields = {
        name: MoneyField("currency")
        for name in ("amount_off", "max_discount", "random_min", "random_max", "random_mean", "min_spend")
    } | {
        "budget": MoneyField("currency"),
        "committed": MoneyField("currency"),
        "budget_left": MoneyField("currency", label=_("budget left")),
    }
    actions = ("approve_cofunding", "reject_cofunding", "pause")

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        # The terms are the merchant's: no page edits them. The list's actions need the change right (obj None).
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    @admin.display(description=_("schedule"), ordering="starts_at")
    def schedule(self, obj: Promotion) -> str:
        return "{} – {}".format(
            date_format(timezone.localtime(obj.starts_at), "SHORT_DATETIME_FORMAT"),
            date_format(timezone.localtime(obj.ends_at), "SHORT_DATETIME_FORMAT"),
        )

    @admin.display(description=_("co-funding"), ordering="cofunding")
    def cofunding_state(self, obj: Promotion) -> str:
        if obj.cofunder_id is None:
            return str(obj.get_cofunding_display())
        return f"{obj.get_cofunding_display()} · {obj.cofunder} {obj.cofunder_share:.0%}"

    @admin.display(description=_("uses"))
    def uses_link(self, obj: Promotion) -> str:
        url = reverse("admin:rewards_promotionuse_changelist") + f"?promotion={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, _("payments"))

    def _act(self, request: HttpRequest, queryset: models.QuerySet[Any], call: Any, done: Any) -> None:
        for promotion in queryset:
            try:
                call(promotion_id=promotion.pk, operator=request.user)
            except MengkaError as exc:
                messages.error(request, f"#{promotion.pk}: {exc.message}")
            else:
                messages.success(request, done % {"id": promotion.pk})

    @admin.action(description=_("Approve co-funding of the selected promotions"), permissions=["change"])
    def approve_cofunding(self, request: HttpRequest, queryset: models.QuerySet[Any]) -> None:
        self._act(
            request,
            queryset,
            lambda **kw: services.promotion_cofunding_decide(approve=True, **kw),
            _("Co-funding of promotion %(id)s approved."),
        )

    @admin.action(description=_("Reject co-funding of the selected promotions"), permissions=["change"])
    def reject_cofunding(self, request: HttpRequest, queryset: models.QuerySet[Any]) -> None:
        self._act(
            request,
            queryset,
            lambda **kw: services.promotion_cofunding_decide(approve=False, **kw),
            _("Co-funding of promotion %(id)s rejected."),
        )

    @admin.action(description=_("Pause the selected promotions"), permissions=["change"])
    def pause(self, request: HttpRequest, queryset: models.QuerySet[Any]) -> None:
        self._act(request, queryset, services.promotion_pause_by_operator, _("Promotion %(id)s paused."))


@admin.register(PromotionUse)
class PromotionUseAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    """Each payment's use of a promotion: what it gave and cost, the co-funding bank's part, what refunds returned.
    As on payments, the person behind a use is for alliance operators only: a sponsor or co-funding bank sees the
    payment and the amounts, never the cardholder."""

    scope_field = tuple(f"promotion__{path}" for path in PROMOTION_BANKS)
    list_display = (
        "id",
        "promotion",
        "payment",
        "cardholder_shown",
        "status",
        "discount",
        "points",
        "cost",
        "cofunder_cost",
        "returned_cost",
        "returned_points",
        "created_at",
    )
    list_select_related = ("promotion", "cardholder")
    list_filter = ("status",)
    search_fields = ("=payment",)
    list_per_page = 50
    show_full_result_count = False  # a long campaign has many uses: no second COUNT over all of them
    fields = (
        "promotion",
        "payment",
        "cardholder_shown",
        "day",
        "status",
        "position",
        "discount",
        "points",
        "cost",
        "cofunder_cost",
        "returned_cost",
        "returned_points",
        "stamp",
        "voucher",
        "created_at",
        "updated_at",
    )
    readonly_fields = ("cardholder_shown",)
    money_fields = {
        name: MoneyField("promotion.currency") for name in ("discount", "cost", "cofunder_cost", "returned_cost")
    }

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        if lookup == "promotion":  # the promotion page's link to its uses
            return True
        return super().lookup_allowed(lookup, value, request)

    def get_queryset(self, request: HttpRequest) -> models.QuerySet[Any]:
        everything = operator_scope(request.user).everything
        return super().get_queryset(request).annotate(cardholder_visible=Value(everything))

    @admin.display(description=_("cardholder"))
    def cardholder_shown(self, obj: PromotionUse) -> str:
        return str(obj.cardholder) if getattr(obj, "cardholder_visible", False) else "—"
