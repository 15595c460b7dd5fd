from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import BooleanField, CharField, ExpressionWrapper, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.fields.json import KT
from django.db.models.functions import Cast
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.timezone import localtime
from django.utils.translation import gettext_lazy as _

from core.admin_base import (
    PartitionedAdmin,
    ReadOnlyAdminMixin,
    ScopedAdmin,
    ScopedTabularInline,
    action_reason,
)
from core.admin_display import MoneyField, money_text
from core.errors import MengkaError
from core.models import ApprovalRequest
from core.scoping import OperatorScope, operator_scope

from . import fees, selectors, services
from .models import (
    Agreement,
    AgreementRequest,
    Channel,
    ChannelErrorPolicy,
    Dispute,
    DisputeEvidence,
    DisputeFeedCursor,
    DisputeKind,
    FeeSchedule,
    FeeSplit,
    JournalCursor,
    PaymentAttempt,
    PaymentCode,
    PaymentIntent,
    Payout,
    ReconciliationException,
    Refund,
    ReservePolicy,
    RiskBlock,
    RiskReview,
    RiskRule,
    RoutingDecision,
    RoutingRule,
    RuleChannel,
    SettlementBatch,
    SplitInstruction,
    StatementImport,
    UnmatchedCharge,
)
from .selectors import channel_figures

PAYMENT_BANKS = ("issuer", "acquirer", "merchant__sponsor_bank")

# --- Who sees a payment in full ---------------------------------------------------------------------------------------
# A payment is in the scope of its issuer, its acquirer and its merchant's sponsor bank (PAYMENT_BANKS). Only the
# issuer's people (and alliance operators) see the cardholder behind it; a bank that reaches it only as acquirer or
# sponsor sees what an acquirer sees: merchant, amount, time, channel, state, issuer bank and card product, BIN and
# last four. Every payment admin below annotates its rows with SEEN_IN_FULL through `with_full_view` and decides from
# it alone: which fields a page shows, which list cells are blanked, which filters may name a cardholder.

SEEN_IN_FULL = "seen_in_full"

# What the cardholder's side of a payment is made of: never shown to, nor filtered on by, an acquirer or sponsor.
CARDHOLDER_FIELDS = frozenset(
    {
        "cardholder",
        "card",
        "linked_account",
        "payment_code",
        "agreement",
        "device_id",
        "points_earned",
        "points_reversed",
        "points_used",
        "points_amount",
        "promotion_points",
        "points_hold",
        "points_spend",
        "risk_reasons",
        "metadata",
    }
)


def with_full_view(queryset: QuerySet[Any], scope: OperatorScope, issuer_path: str = "issuer") -> QuerySet[Any]:
    """`queryset` with SEEN_IN_FULL on each row: true for an alliance operator, and for a bank operator or auditor of
    the bank that issued the card or account the payment (at `issuer_path`) was paid with."""
    if scope.everything:
        return queryset.annotate(**{SEEN_IN_FULL: Value(True)})
    condition = Q(**{f"{issuer_path}__in": scope.bank_ids}) if scope.bank_ids else Q(pk__in=[])
    return queryset.annotate(**{SEEN_IN_FULL: ExpressionWrapper(condition, output_field=BooleanField())})


def seen_in_full(obj: Any) -> bool:
    """Whether a row read through a payment admin (or, for an inline, its payment) is shown in full. A row that did
    not come through `with_full_view` is not."""
    return obj is not None and getattr(obj, SEEN_IN_FULL, False) is True


class AcquirerViewMixin:
    """Leaves `hidden_from_acquirers` out of a page whose payment is not seen in full. On an inline, `obj` is the
    payment the page is about."""

    hidden_from_acquirers: ClassVar[frozenset[str]] = frozenset()

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = super().get_fields(request, obj)  # type: ignore[misc]
        if seen_in_full(obj):
            return fields
        return [field for field in fields if field not in self.hidden_from_acquirers]


class PaymentScopeMixin(AcquirerViewMixin):
    """For the admins of payments and their rows (`issuer_path` leads to the payment's issuer): rows annotated with
    SEEN_IN_FULL, and a list filtered on a cardholder field (`?cardholder=…`, `?device_id=…`, points) narrowed to
    the payments the operator sees in full, so an acquirer cannot pick out one person's payments."""

    issuer_path: ClassVar[str] = "issuer"
    hidden_from_acquirers = CARDHOLDER_FIELDS

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        return with_full_view(queryset, operator_scope(request.user), self.issuer_path)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Any], search_term: str) -> Any:
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)  # type: ignore[misc]
        if any(key.split("__")[0] in self.hidden_from_acquirers for key in request.GET):
            queryset = queryset.filter(**{SEEN_IN_FULL: True})
        return queryset, may_have_duplicates

    @admin.display(description=_("card product"))
    def card_brand(self, obj: Any) -> str:
        payment = self._payment(obj)
        if payment.card is not None:
            product = payment.card.product
            return f"{product.name} ({product.get_kind_display()})"
        if payment.linked_account is not None:
            return str(payment.linked_account.get_kind_display())
        return ""

    @admin.display(description=_("BIN"))
    def card_bin(self, obj: Any) -> str:
        card = self._payment(obj).card
        return card.bin if card is not None else ""

    @admin.display(description=_("last four"))
    def card_last4(self, obj: Any) -> str:
        payment = self._payment(obj)
        if payment.card is not None:
            return payment.card.last4
        if payment.linked_account is not None:
            return payment.linked_account.masked_number[-4:]
        return ""

    @admin.display(description=_("risk reason codes"))
    def risk_reason_codes(self, obj: Any) -> str:
        return ", ".join(reason.get("code", "") for reason in self._payment(obj).risk_reasons)

    def _payment(self, obj: Any) -> PaymentIntent:
        return obj if isinstance(obj, PaymentIntent) else obj.intent


class ChannelListFilter(admin.RelatedFieldListFilter):
    """The channel filter's choices in one query (a channel's name shows its acquirer)."""

    def channels(self, request: HttpRequest, model_admin: Any) -> Any:
        return Channel.objects.all()

    def field_choices(self, field: Any, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        ordering = self.field_admin_ordering(field, request, model_admin) or ("code",)
        channels = self.channels(request, model_admin).select_related("acquirer").order_by(*ordering)
        return [(str(channel.pk), str(channel)) for channel in channels]


class OwnChannelListFilter(ChannelListFilter):
    """The same, offering only the channels the operator's own channel list shows (for lists scoped by acquirer)."""

    def channels(self, request: HttpRequest, model_admin: Any) -> Any:
        return model_admin.admin_site.get_model_admin(Channel).get_queryset(request)


class RoutingConfigAdmin(ScopedAdmin):
    """Saving a channel, rule or error policy makes every process reload the routing configuration."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        services.routing_config_changed()

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        services.routing_config_changed()

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        super().delete_model(request, obj)
        services.routing_config_changed()


@admin.register(Channel)
class ChannelAdmin(RoutingConfigAdmin):
    scope_field = "acquirer"
    list_display = (
        "code",
        "name",
        "kind",
        "acquirer",
        "fee_percent",
        "fee_fixed",
        "cutoff",
        "enabled",
        "sandbox",
        "payouts",
        "breaker_state",
    )
    list_filter = ("kind", "enabled", "sandbox", "payouts", "acquirer")
    search_fields = ("code", "name")
    change_list_template = "admin/payments/channel/change_list.html"

    @admin.display(description=_("breaker"))
    def breaker_state(self, obj: Channel) -> str:
        return self._figures.get(obj.code, "")

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        figures = channel_figures()
        visible = set(self.get_queryset(request).values_list("code", flat=True))
        self._figures = {f.code: f.breaker for f in figures}
        extra_context = {**(extra_context or {}), "channel_figures": [f for f in figures if f.code in visible]}
        return super().changelist_view(request, extra_context)


class RuleChannelInline(ScopedTabularInline):
    model = RuleChannel
    alliance_only = True
    extra = 1
    fields = ("channel", "position", "weight")


@admin.register(RoutingRule)
class RoutingRuleAdmin(RoutingConfigAdmin):
    alliance_only = True
    list_display = ("priority", "name", "strategy", "enabled", "merchant", "method", "currency", "issuer", "on_us")
    list_filter = ("strategy", "enabled", "method", "currency")
    list_editable = ("enabled",)
    search_fields = ("name",)
    inlines = [RuleChannelInline]


@admin.register(ChannelErrorPolicy)
class ChannelErrorPolicyAdmin(RoutingConfigAdmin):
    alliance_only = True
    list_display = ("error_code", "channel", "retry", "note")
    list_filter = ("retry", "channel")
    search_fields = ("error_code", "note")


class RoutingDecisionInline(ReadOnlyAdminMixin, ScopedTabularInline):
    model = RoutingDecision
    scope_field = tuple(f"intent__{path}" for path in PAYMENT_BANKS)
    extra = 0
    fields = ("created_at", "rule_name", "strategy", "chosen", "explained", "explored", "decided_in_us")
    readonly_fields = fields

    @admin.display(description=_("candidates"))
    def explained(self, obj: RoutingDecision) -> str:
        parts = []
        for candidate in obj.candidates:
            if candidate.get("dropped"):
                parts.append(f"{candidate['channel']}: {_('dropped')} ({candidate['dropped']})")
            else:
                parts.append(f"{candidate['channel']}: {_('score')} {candidate.get('score')}")
        return "; ".join(parts)


class AttemptInline(ReadOnlyAdminMixin, ScopedTabularInline):
    model = PaymentAttempt
    scope_field = tuple(f"intent__{path}" for path in PAYMENT_BANKS)
    extra = 0
    fields = ("sequence", "channel", "reference", "status", "amount", "error_code", "latency_ms", "resolved_at")
    readonly_fields = fields
    money_fields = {"amount": MoneyField()}


class RefundInline(AcquirerViewMixin, ReadOnlyAdminMixin, ScopedTabularInline):
    model = Refund
    scope_field = tuple(f"intent__{path}" for path in PAYMENT_BANKS)
    extra = 0
    fields = ("public_id", "amount", "status", "reason", "points_reversed", "created_at", "completed_at")
    readonly_fields = fields
    hidden_from_acquirers = frozenset({"points_reversed"})
    money_fields = {"amount": MoneyField("intent.currency")}


class FeeSplitInline(ReadOnlyAdminMixin, ScopedTabularInline):
    model = FeeSplit
    scope_field = tuple(f"payment__{path}" for path in PAYMENT_BANKS)
    fk_name = "payment"
    extra = 0
    fields = ("event", "refund", "party", "bank", "amount", "schedule", "created_at")
    readonly_fields = fields
    money_fields = {"amount": MoneyField("payment.currency", finer=2, label=_("amount"))}


@admin.register(PaymentIntent)
class PaymentIntentAdmin(PaymentScopeMixin, ReadOnlyAdminMixin, PartitionedAdmin):
    scope_field = PAYMENT_BANKS
    list_display = (
        "public_id",
        "merchant",
        "amount",
        "status",
        "method",
        "livemode",
        "channel",
        "issuer",
        "acquirer",
        "business_date",
        "created_at",
    )
    list_select_related = ("merchant", "channel__acquirer", "issuer", "acquirer")  # one query, whatever the page size
    list_filter = (
        "livemode", "status", "method", "risk_outcome", "risk_review", "currency", ("channel", ChannelListFilter),
        "issuer", "acquirer",
    )  # fmt: skip
    search_fields = ("public_id", "merchant_reference", "merchant__code")
    date_hierarchy = "created_at"
    archived_table = "payments_paymentintent"
    archived_note = _("Payments made before %(month)s have been archived and are no longer listed here.")
    inlines = [RoutingDecisionInline, AttemptInline, RefundInline, FeeSplitInline]
    readonly_fields = ("card_brand", "card_bin", "card_last4", "risk_reason_codes")
    money_fields = {
        "amount": MoneyField(),
        "amount_capturable": MoneyField(),
        "amount_captured": MoneyField(),
        "amount_refunded": MoneyField(),
        "amount_refund_reserved": MoneyField(),
        "points_amount": MoneyField(label=_("paid with points")),
        "discount_amount": MoneyField(label=_("promotion discount")),
        "fee": MoneyField(finer=2, label=_("fee")),
        "fee_returned": MoneyField(finer=2, label=_("fee handed back")),
    }

    def get_formset_kwargs(
        self, request: HttpRequest, obj: PaymentIntent, inline: admin.options.InlineModelAdmin, prefix: str
    ) -> dict[str, Any]:
        """The payment's attempts, refunds and fee splits are read in its month's partition (docs/scaling.md,
        "Partitioning by month")."""
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        if isinstance(inline, (AttemptInline, RefundInline)) and obj is not None and obj.pk is not None:
            kwargs["queryset"] = kwargs["queryset"].filter(intent_created_at=obj.created_at)
        if isinstance(inline, FeeSplitInline) and obj is not None and obj.pk is not None:
            kwargs["queryset"] = kwargs["queryset"].filter(payment_created_at=obj.created_at)
        return kwargs


@admin.register(PaymentAttempt)
class PaymentAttemptAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    scope_field = tuple(f"intent__{path}" for path in PAYMENT_BANKS)
    list_display = ("reference", "channel", "status", "amount", "error_code", "latency_ms", "created_at")
    money_fields = {"amount": MoneyField()}
    list_select_related = ("channel__acquirer",)
    list_filter = ("status", ("channel", ChannelListFilter))
    search_fields = ("reference", "channel_reference")


@admin.register(UnmatchedCharge)
class UnmatchedChargeAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    """Charges a channel made that no attempt accounts for yet, which the orphan sweep looks at again every run."""

    scope_field = "channel__acquirer"
    list_display = ("reference", "channel", "reason", "seen_at")
    list_select_related = ("channel__acquirer",)
    list_filter = (("channel", OwnChannelListFilter), "reason")
    search_fields = ("reference",)


@admin.register(JournalCursor)
class JournalCursorAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    """Where the orphan sweep is in each channel's journal."""

    scope_field = "channel__acquirer"
    list_display = ("channel", "position", "swept_at")


@admin.register(DisputeFeedCursor)
class DisputeFeedCursorAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    """Where the dispute poll is in each channel's feed of dispute notices, and the feed's last error."""

    scope_field = "channel__acquirer"
    list_display = ("channel", "position", "polled_at", "error")
    list_select_related = ("channel__acquirer",)


@admin.register(Refund)
class RefundAdmin(PaymentScopeMixin, ReadOnlyAdminMixin, ScopedAdmin):
    scope_field = tuple(f"intent__{path}" for path in PAYMENT_BANKS)
    issuer_path = "intent__issuer"
    hidden_from_acquirers = frozenset({"points_reversed"})
    list_display = ("public_id", "intent", "amount", "status", "points_reversed_shown", "created_at")
    list_select_related = ("intent",)
    money_fields = {"amount": MoneyField("intent.currency")}
    list_filter = ("intent__livemode", "status")
    search_fields = ("public_id", "intent__public_id", "reference")
    # The month the table is partitioned on (the payment's): a month's page reads one partition.
    date_hierarchy = "intent_created_at"

    @admin.display(description=_("points reversed"))
    def points_reversed_shown(self, obj: Refund) -> Any:
        return obj.points_reversed if seen_in_full(obj) else "—"


@admin.register(FeeSchedule)
class FeeScheduleAdmin(RoutingConfigAdmin):
    """Alliance-wide pricing. Add a new version rather than editing one that payments have used."""

    alliance_only = True
    list_display = (
        "merchant",
        "method",
        "mdr_percent",
        "fixed",
        "issuer_share",
        "acquirer_share",
        "channel_share",
        "alliance_share",
        "effective_from",
        "effective_to",
    )
    list_filter = ("method",)
    list_select_related = ("merchant",)
    search_fields = ("merchant__code", "merchant__display_name")
    raw_id_fields = ("merchant",)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        # A new version goes through the service, which closes the open-ended version before it (audited there).
        saved = fees.fee_schedule_create(
            **{name: form.cleaned_data[name] for name in FEE_SCHEDULE_FIELDS}, actor=request.user
        )
        obj.pk = saved.pk

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A version that fees were charged under stays as it was; add a new version instead.
        if obj is not None and FeeSplit.objects.filter(schedule=obj).exists():
            return False
        return super().has_change_permission(request, obj)


FEE_SCHEDULE_FIELDS = (
    "merchant",
    "method",
    "mdr_percent",
    "fixed",
    "issuer_share",
    "acquirer_share",
    "channel_share",
    "alliance_share",
    "effective_from",
    "effective_to",
)


@admin.register(FeeSplit)
class FeeSplitAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    scope_field = tuple(f"payment__{path}" for path in PAYMENT_BANKS)
    list_display = ("payment", "event", "party", "bank", "amount", "created_at")
    list_select_related = ("payment", "bank")
    money_fields = {"amount": MoneyField("payment.currency", finer=2, label=_("amount"))}
    list_filter = ("event", "party")
    search_fields = ("payment__public_id",)
    # The month the table is partitioned on (the payment's): a month's page reads one partition.
    date_hierarchy = "payment_created_at"


@admin.register(RiskRule)
class RiskRuleAdmin(RoutingConfigAdmin):
    alliance_only = True
    list_display = (
        "name",
        "kind",
        "subject",
        "window",
        "threshold",
        "action",
        "method",
        "card_tier",
        "verification_level",
        "enabled",
    )
    list_filter = ("kind", "action", "method", "card_tier", "verification_level", "enabled")
    list_editable = ("enabled",)
    search_fields = ("name",)


@admin.register(RiskBlock)
class RiskBlockAdmin(ScopedAdmin):
    alliance_only = True
    list_display = ("kind", "value", "reason", "created_at")
    list_filter = ("kind",)
    search_fields = ("value", "reason")


@admin.register(RiskReview)
class RiskReviewAdmin(PaymentScopeMixin, ScopedAdmin):
    """Payments held by a risk review: approve captures them, reject voids them; undecided ones expire."""

    scope_field = PAYMENT_BANKS
    list_display = (
        "public_id",
        "merchant",
        "amount",
        "method",
        "reasons",
        "first_approval",
        "risk_review_deadline",
        "created_at",
    )
    list_filter = ("method", "currency")
    search_fields = ("public_id", "merchant__code")
    actions = ["approve", "reject"]
    money_fields = {"amount": MoneyField()}
    fields = (
        "public_id",
        "merchant",
        "cardholder",
        "card",
        "amount",
        "currency",
        "method",
        "status",
        "card_bin",
        "card_last4",
        "risk_outcome",
        "risk_reason_codes",
        "risk_reasons",
        "risk_review_deadline",
        "device_id",
        "created_at",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> Any:
        return (
            super()
            .get_queryset(request)
            .filter(risk_review=True, status=PaymentIntent.Status.REQUIRES_CAPTURE)
            .select_related("merchant")
            .annotate(
                release_maker=Subquery(_pending_release_makers(services.RISK_REVIEW_RELEASE_KIND.code, "public_id")),
                release_asked_at=Subquery(
                    _pending_releases(services.RISK_REVIEW_RELEASE_KIND.code, "public_id").values("created_at")[:1]
                ),
            )
        )

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("reasons"))
    def reasons(self, obj: RiskReview) -> str:
        if not seen_in_full(obj):  # the messages describe the cardholder's behaviour; an acquirer gets the codes
            return self.risk_reason_codes(obj)
        return "; ".join(reason.get("message", "") for reason in obj.risk_reasons)

    @admin.display(description=_("first approval"))
    def first_approval(self, obj: RiskReview) -> str:
        """Who gave the first of two approvals (the release request waiting in the approval queue), and when; "needs
        two" where none is given yet; blank where one is enough."""
        maker = getattr(obj, "release_maker", None)
        if maker is None:
            return str(_("needs two")) if services.risk_review_needs_two(obj) else ""
        asked_at = obj.release_asked_at  # type: ignore[attr-defined]
        return f"{maker} {date_format(localtime(asked_at), 'SHORT_DATETIME_FORMAT')}"

    def _decide(self, request: HttpRequest, queryset: Any, decide: Any, done: str, **reason: str) -> None:
        count = 0
        for payment in queryset:
            try:
                decided = decide(payment_id=payment.public_id, actor=request.user, **reason)
            except MengkaError as error:
                self.message_user(request, f"{payment.public_id}: {error}", messages.ERROR)
                continue
            if decided.risk_review:
                self.message_user(
                    request,
                    _("%(payment)s: first approval recorded; a second, different operator must approve it.")
                    % {"payment": payment.public_id},
                    messages.WARNING,
                )
                continue
            count += 1
        if count:
            self.message_user(request, done % {"count": count}, messages.SUCCESS)

    @admin.action(description=_("Approve (capture) the selected payments"), permissions=["change"])
    def approve(self, request: HttpRequest, queryset: Any) -> TemplateResponse | None:
        """Above the threshold the first approval is a release request: asked with the operator's reason (the second
        approves the request waiting, and needs none)."""
        if any(
            services.risk_review_needs_two(payment)
            and not services.risk_release_requests_pending(payment.public_id).exists()
            for payment in queryset
        ):
            reason = action_reason(self, request, queryset, title=str(_("Approve (capture) the selected payments")))
            if isinstance(reason, TemplateResponse):
                return reason
            self._decide(
                request, queryset, services.risk_review_approve, str(_("%(count)d payments approved.")), reason=reason
            )
            return None
        self._decide(request, queryset, services.risk_review_approve, str(_("%(count)d payments approved.")))
        return None

    @admin.action(description=_("Reject (void) the selected payments"), permissions=["change"])
    def reject(self, request: HttpRequest, queryset: Any) -> None:
        self._decide(request, queryset, services.risk_review_reject, str(_("%(count)d payments rejected.")))


FUNDING_BANKS = ("card__bank", "linked_account__bank")


@admin.register(PaymentCode)
class PaymentCodeAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    scope_field = FUNDING_BANKS
    list_display = ("__str__", "cardholder", "card", "linked_account", "created_at", "expires_at", "used_at")
    list_select_related = ("cardholder", "card__bank", "linked_account__bank")
    exclude = ("code",)  # a live code is as good as the card for 60 seconds: never shown to operators


@admin.register(Agreement)
class AgreementAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    scope_field = FUNDING_BANKS
    list_display = (
        "public_id",
        "token_hint",
        "cardholder",
        "merchant",
        "card",
        "linked_account",
        "limit_per_payment",
        "limit_per_month",
        "created_at",
        "revoked_at",
    )
    money_fields = {
        "limit_per_payment": MoneyField(label=_("limit per payment")),
        "limit_per_month": MoneyField(label=_("limit per month")),
    }
    list_filter = ("currency",)
    list_select_related = ("cardholder", "merchant", "card__bank", "linked_account__bank")
    search_fields = ("public_id", "merchant__code")
    exclude = ("token_hash",)  # the token itself is never stored: its keyed hash, and the hint shown here


@admin.register(AgreementRequest)
class AgreementRequestAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    # The requesting merchant's sponsor bank, and once granted the bank of the card or account it was granted with.
    scope_field = ("merchant__sponsor_bank", "agreement__card__bank", "agreement__linked_account__bank")
    list_display = (
        "public_id",
        "merchant",
        "livemode",
        "status",
        "limit_per_payment",
        "limit_per_month",
        "purpose",
        "agreement",
        "created_at",
        "expires_at",
        "decided_at",
    )
    list_filter = ("status", "livemode", "currency")
    search_fields = ("public_id", "merchant__code")
    exclude = ("token_encrypted",)  # the token, until its merchant collects it: never shown to operators


# --- Payouts, and releasing a frozen merchant's held settlement batches ---------------------------------------------
# Both by the merchant's sponsor bank, read-only. Money leaves only through the payout services' maker-checker: one
# operator asks for a release, another approves it; the buttons are shown to those who may write for a bank.

PAYOUT_SCOPE = "merchant__sponsor_bank"


def _pending_releases(kind: str, outer: str) -> QuerySet[ApprovalRequest]:
    """The pending, unexpired requests of `kind` whose payload's id (`payout_id`, `payment_id`) is the outer row's
    `outer` field."""
    key = {"payments.payout_release": "payout_id", "payments.risk_review_release": "payment_id"}[kind]
    return (
        ApprovalRequest.objects.filter(kind=kind, status=ApprovalRequest.Status.PENDING, expires_at__gt=timezone.now())
        .alias(subject=KT(f"payload__{key}"))
        .filter(subject=Cast(OuterRef(outer), output_field=CharField()))
        .order_by("-id")
    )


def _pending_release_makers(kind: str, outer: str) -> Any:
    return _pending_releases(kind, outer).values("maker__username")[:1]


class PayoutActionsMixin:
    def has_release_permission(self, request: HttpRequest) -> bool:
        return self._writable(request, None)  # type: ignore[attr-defined,no-any-return]

    def _each(self, request: HttpRequest, queryset: Any, act: Any, done: str) -> list[Any]:
        """Runs `act(row)` on each selected row; a refusal is reported with its row and the others go on."""
        results = []
        for row in queryset:
            try:
                results.append(act(row))
            except MengkaError as error:
                self.message_user(request, f"{row}: {error.message}", messages.ERROR)  # type: ignore[attr-defined]
        if results and done:
            self.message_user(request, done % {"count": len(results)}, messages.SUCCESS)  # type: ignore[attr-defined]
        return results


class PayoutInline(ReadOnlyAdminMixin, ScopedTabularInline):
    model = Payout
    scope_field = PAYOUT_SCOPE
    fields = ("public_id", "reference", "amount", "status", "return_reason", "sent_at")
    readonly_fields = fields
    money_fields = {"amount": MoneyField()}
    extra = 0


@admin.register(Payout)
class PayoutAdmin(PayoutActionsMixin, ReadOnlyAdminMixin, ScopedAdmin):
    """A batch's payout through the sponsor bank's channel. Above the threshold (and for a held batch) it waits for one
    operator to ask for its release and another to approve it; a returned one is sent again as a new payout."""

    scope_field = PAYOUT_SCOPE
    list_display = (
        "public_id",
        "merchant",
        "batch",
        "amount",
        "status",
        "return_reason",
        "reference",
        "channel",
        "account_last4",
        "release_requested_by",
        "attempts",
        "sent_at",
        "finished_at",
    )
    list_filter = ("status", "currency")
    list_select_related = ("merchant", "batch", "channel")
    search_fields = ("public_id", "reference", "merchant__code", "batch__public_id")
    money_fields = {"amount": MoneyField()}
    actions = ["request_release", "approve_release", "resend"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Payout]:
        pending = _pending_release_makers(services.PAYOUT_RELEASE_KIND.code, "pk")
        return super().get_queryset(request).annotate(release_maker=Subquery(pending))

    @admin.display(description=_("release requested by"))
    def release_requested_by(self, obj: Payout) -> str:
        """The maker of the release request waiting in the approval queue, if any."""
        return getattr(obj, "release_maker", None) or ""

    @admin.action(description=_("Ask for the release of the selected payouts"), permissions=["release"])
    def request_release(self, request: HttpRequest, queryset: QuerySet[Payout]) -> TemplateResponse | None:
        reason = action_reason(self, request, queryset, title=str(_("Ask for the release of the selected payouts")))
        if isinstance(reason, TemplateResponse):
            return reason
        self._each(
            request,
            queryset,
            lambda payout: services.payout_release_request(target=payout, operator=request.user, reason=reason),
            str(_("%(count)d releases asked for: a second operator approves them.")),
        )
        return None

    @admin.action(
        description=_("Approve the release of the selected payouts (a second operator)"), permissions=["release"]
    )
    def approve_release(self, request: HttpRequest, queryset: QuerySet[Payout]) -> None:
        self._each(
            request,
            queryset,
            lambda payout: services.payout_release_approve(target=payout, operator=request.user),
            str(_("%(count)d payouts released.")),
        )

    @admin.action(description=_("Send the selected returned payouts again"), permissions=["release"])
    def resend(self, request: HttpRequest, queryset: QuerySet[Payout]) -> None:
        self._each(
            request,
            queryset,
            lambda payout: services.payout_resend(payout=payout, operator=request.user),
            str(_("%(count)d payouts to send again, under new references.")),
        )


# --- settlements ----------------------------------------------------------------------------------------------------
# A batch belongs to its merchant's sponsor bank. Batches, their lines and split instructions are written by the
# settlement run, never here: the admin reads them. A batch's lines (a hundred thousand, for a big merchant) are read
# a page at a time on their own page, and downloaded as CSV.

SETTLEMENT_BANK = "merchant__sponsor_bank"
LINES_PER_PAGE = 100


@admin.register(ReservePolicy)
class ReservePolicyAdmin(ScopedAdmin):
    """The rolling reserve by risk grade: the alliance sets it, every bank sees what its merchants are held to."""

    shared_read = True
    list_display = ("risk_grade", "percent", "hold_working_days")


class SplitInstructionInline(ReadOnlyAdminMixin, ScopedTabularInline):
    model = SplitInstruction
    scope_field = f"batch__{SETTLEMENT_BANK}"
    extra = 0
    fields = ("party", "bank", "acquirer", "amount")
    readonly_fields = fields
    money_fields = {"amount": MoneyField("batch.currency", finer=2, label=_("amount"))}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).select_related("batch", "bank", "acquirer")


SETTLEMENT_AMOUNTS = (
    "gross", "refunds", "fee_total", "promotion_charges", "cofunding_credits", "dispute_debits", "reserve_held",
    "reserve_released", "carried_in", "carried_out", "net",
)  # fmt: skip


class SettlementReportForm(forms.Form):
    settle_on = forms.DateField(
        label=_("Settlement date"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    mode = forms.ChoiceField(label=_("Mode"), choices=[("live", _("live")), ("test", _("test"))], required=False)


SETTLEMENT_FIGURES = (
    "payments_count", "gross", "refunds_count", "refunds", "fees", "fee_total", "fee_parties", "promotion_charges",
    "cofunding_credits", "dispute_debits", "reserve_held", "reserve_release_on", "reserve_released", "carried_in",
    "carried_out", "net",
)  # fmt: skip


@admin.register(SettlementBatch)
class SettlementBatchAdmin(PayoutActionsMixin, ReadOnlyAdminMixin, ScopedAdmin):
    scope_field = SETTLEMENT_BANK
    list_display = (
        "public_id", "merchant", "cycle", "period", "settle_on", "status", "payments_count", "gross", "refunds",
        "fee_total", "net", "reserve_held", "hold_reason", "livemode",
    )  # fmt: skip
    list_select_related = ("merchant",)
    list_filter = ("status", "cycle", "livemode", "currency", "settle_on")
    search_fields = ("public_id", "merchant__code", "period")
    date_hierarchy = "settle_on"
    show_full_result_count = False
    change_list_template = "admin/payments/settlementbatch/change_list.html"
    inlines = [SplitInstructionInline, PayoutInline]
    actions = ["release_held"]
    money_fields = {
        **{name: MoneyField() for name in SETTLEMENT_AMOUNTS},
        "fees": MoneyField(finer=2, label=_("fees before rounding")),
    }
    fieldsets = (
        (None, {"fields": ("public_id", "merchant", "currency", "livemode", "cycle", "period", "cutoff_at")}),
        (_("Status"), {"fields": ("status", "hold_reason", "settle_on", "created_at", "settled_at", "lines")}),
        (_("Figures"), {"fields": SETTLEMENT_FIGURES}),
    )
    readonly_fields = ("lines",)

    def get_list_filter(self, request: HttpRequest) -> Any:
        filters = list(super().get_list_filter(request))
        if operator_scope(request.user).everything:
            filters.append(SETTLEMENT_BANK)  # a bank operator's batches are their own bank's already
        return filters

    @admin.display(description=_("lines"))
    def lines(self, obj: SettlementBatch) -> str:
        return format_html(
            '<a href="{}">{}</a> · <a href="{}">{}</a>',
            reverse("admin:payments_settlementbatch_lines", args=[obj.pk]),
            _("view the lines"),
            reverse("admin:payments_settlementbatch_lines_csv", args=[obj.pk]),
            _("download them (CSV)"),
        )

    def get_urls(self) -> list[URLPattern]:
        def view(function: Any) -> Any:
            return self.admin_site.admin_view(function)

        return [
            path("report/", view(self.report_view), name="payments_settlementbatch_report"),
            path("<int:batch_id>/lines/", view(self.lines_view), name="payments_settlementbatch_lines"),
            path("<int:batch_id>/lines.csv", view(self.lines_csv_view), name="payments_settlementbatch_lines_csv"),
            *super().get_urls(),
        ]

    def _batch(self, request: HttpRequest, batch_id: int) -> SettlementBatch:
        batch = self.get_queryset(request).filter(pk=batch_id).first()
        if batch is None or not self.has_view_permission(request, batch):
            raise Http404("No such settlement batch in your scope.")
        return batch

    def lines_view(self, request: HttpRequest, batch_id: int) -> HttpResponse:
        """A batch's lines, a page at a time in the order they were written (keyset: any page costs the same)."""
        batch = self._batch(request, batch_id)
        after = selectors.line_position(request.GET.get("after", ""))
        page = selectors.settlement_lines_page(batch_id=batch.pk, after=after, limit=LINES_PER_PAGE)
        rows = [
            {
                "line": line,
                "amount": money_text(line.amount, batch.currency),
                "fee": money_text(line.fee_hundredths, batch.currency, finer=2),
                "promotion_charge": money_text(line.promotion_charge, batch.currency),
                "cofunding_credit": money_text(line.cofunding_credit, batch.currency),
            }
            for line in page.lines
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": _("Lines of settlement %(batch)s") % {"batch": batch.public_id},
            "batch": batch,
            "rows": rows,
            "next_after": page.lines[-1].id if page.has_more else None,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/payments/settlementbatch/lines.html", context)

    def lines_csv_view(self, request: HttpRequest, batch_id: int) -> StreamingHttpResponse:
        batch = self._batch(request, batch_id)
        response = StreamingHttpResponse(
            selectors.settlement_lines_csv(batch_id=batch.pk), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="{batch.public_id}-lines.csv"'
        return response

    def report_view(self, request: HttpRequest) -> HttpResponse:
        """The day's settlements per sponsor bank (an operator sees their own bank's), by status; CSV with ?csv=1."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = SettlementReportForm(request.GET or None)
        day, livemode = timezone.localdate(), True
        if form.is_valid():
            day = form.cleaned_data["settle_on"] or day
            livemode = form.cleaned_data["mode"] != "test"
        banks = selectors.settlement_day_by_bank(
            selectors.settlement_day_report(batches=self.get_queryset(request), settle_on=day, livemode=livemode)
        )
        if request.GET.get("csv"):
            response = HttpResponse(selectors.settlement_day_csv(banks), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="settlements-{day.isoformat()}.csv"'
            return response
        statuses = dict(SettlementBatch.Status.choices)
        tables = [
            {
                "bank": bank.bank,
                "currency": bank.currency,
                "rows": [
                    {
                        "code": row.status or "total",
                        "status": statuses.get(row.status, _("total")),
                        "total": not row.status,
                        "batches": row.batches,
                        "payments": row.payments,
                        "amounts": [money_text(getattr(row, name), bank.currency) for name in row.AMOUNTS],
                        "hold_reasons": row.hold_reasons,
                    }
                    for row in (*bank.rows, bank.total)
                ],
            }
            for bank in banks
        ]
        query = request.GET.copy()
        query["csv"] = "1"
        context = {
            **self.admin_site.each_context(request),
            "title": _("Settlements of %(day)s by sponsor bank") % {"day": day.isoformat()},
            "form": form,
            "day": day,
            "livemode": livemode,
            "tables": tables,
            "csv_query": query.urlencode(),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/payments/settlementbatch/report.html", context)

    @admin.action(description=_("Release the selected held batches (two operators)"), permissions=["release"])
    def release_held(self, request: HttpRequest, queryset: QuerySet[SettlementBatch]) -> TemplateResponse | None:
        """Approves the releases another operator asked for; asks, with the operator's reason, for the others."""
        reason = ""
        if not all(services.payout_release_asked(batch) for batch in queryset):
            asking = action_reason(self, request, queryset, title=str(_("Release the selected held batches")))
            if isinstance(asking, TemplateResponse):
                return asking
            reason = asking
        payouts = self._each(
            request,
            queryset,
            lambda batch: services.payout_release(target=batch, operator=request.user, reason=reason),
            "",
        )
        asked = sum(1 for payout in payouts if payout.status == Payout.Status.PENDING_APPROVAL)
        if asked:
            self.message_user(
                request,
                _("%(count)d releases asked for: a second operator approves them.") % {"count": asked},
                messages.WARNING,
            )
        if len(payouts) > asked:
            self.message_user(
                request, _("%(count)d batches released.") % {"count": len(payouts) - asked}, messages.SUCCESS
            )
        return None


# --- reconciliation (对账) ----------------------------------------------------------------------------------------
# A statement and its exceptions belong to the channel's acquirer of record (alliance operators see all). Imports are
# written by the job and only read here; the exceptions queue is acted on through the reconciliation services — one
# action per effect, each audited, the write-off approved by a second operator.

RECON_BANK = "channel__acquirer"


@admin.register(StatementImport)
class StatementImportAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    """The summary per channel and day: each import's rows and the count of each class (the current file of a day is
    `matched`; a corrected file supersedes it)."""

    scope_field = RECON_BANK
    list_display = (
        "business_date",
        "channel",
        "format",
        "status",
        "rows",
        "matched",
        "missing_at_channel",
        "missing_with_us",
        "amount_mismatch",
        "status_mismatch",
        "duplicate",
        "received_at",
    )
    list_filter = ("status", "format", "business_date")
    list_select_related = ("channel__acquirer",)
    search_fields = ("channel__code", "sha256")
    date_hierarchy = "business_date"

    def _count(self, obj: StatementImport, name: str) -> int:
        return int((obj.summary or {}).get(name, {}).get("count", 0))

    @admin.display(description=_("matched"))
    def matched(self, obj: StatementImport) -> int:
        return self._count(obj, "matched")

    @admin.display(description=_("missing at the channel"))
    def missing_at_channel(self, obj: StatementImport) -> int:
        return self._count(obj, "missing_at_channel")

    @admin.display(description=_("missing with us"))
    def missing_with_us(self, obj: StatementImport) -> int:
        return self._count(obj, "missing_with_us")

    @admin.display(description=_("amount mismatch"))
    def amount_mismatch(self, obj: StatementImport) -> int:
        return self._count(obj, "amount_mismatch")

    @admin.display(description=_("status mismatch"))
    def status_mismatch(self, obj: StatementImport) -> int:
        return self._count(obj, "status_mismatch")

    @admin.display(description=_("duplicate"))
    def duplicate(self, obj: StatementImport) -> int:
        return self._count(obj, "duplicate")


@admin.register(ReconciliationException)
class ReconciliationExceptionAdmin(PayoutActionsMixin, ScopedAdmin):
    """The exceptions queue: every difference a statement showed, open until an operator acts."""

    scope_field = RECON_BANK
    list_display = (
        "public_id",
        "business_date",
        "channel",
        "kind",
        "txn_kind",
        "reference",
        "our_amount",
        "channel_amount",
        "our_status",
        "channel_status",
        "holds_settlement",
        "status",
        "resolution",
    )
    list_filter = ("status", "kind", "txn_kind", "holds_settlement", "business_date")
    list_select_related = ("channel__acquirer",)
    search_fields = ("public_id", "reference", "channel_txn_id", "channel__code")
    money_fields = {
        "our_amount": MoneyField(),
        "channel_amount": MoneyField(),
        "write_off_amount": MoneyField(),
    }
    actions = ["accept_channel", "accept_ours", "request_write_off", "approve_write_off", "reinquire"]
    fields = (
        "public_id",
        "channel",
        "business_date",
        "statement",
        "kind",
        "txn_kind",
        "reference",
        "channel_txn_id",
        "payment",
        "refund",
        "payout",
        "currency",
        "our_amount",
        "channel_amount",
        "our_status",
        "channel_status",
        "copies",
        "holds_settlement",
        "status",
        "resolution",
        "note",
        "write_off_amount",
        "write_off_request",
        "write_off_transaction",
        "resolved_by",
        "resolved_at",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("write-off request"))
    def write_off_request(self, obj: ReconciliationException) -> str:
        """The write-off waiting in the approval queue: who asked, for how much."""
        pending = services.write_off_requests_pending(obj.pk).select_related("maker").first()
        if pending is None:
            return ""
        amount = money_text(int(pending.payload.get("amount") or 0), str(pending.payload.get("currency", "")))
        return str(_("%(amount)s, asked by %(maker)s: a second operator approves it.")) % {
            "amount": amount,
            "maker": pending.maker,
        }

    def _act(self, request: HttpRequest, queryset: QuerySet[ReconciliationException], act: Any, done: str) -> None:
        self._each(request, queryset, lambda row: act(exception_id=row.pk, operator=request.user), done)

    @admin.action(description=_("Accept the channel's view (correct our record)"), permissions=["change"])
    def accept_channel(self, request: HttpRequest, queryset: QuerySet[ReconciliationException]) -> None:
        self._act(request, queryset, services.exception_accept_channel, str(_("%(count)d corrected to the channel.")))

    @admin.action(description=_("Accept ours (flag for the channel)"), permissions=["change"])
    def accept_ours(self, request: HttpRequest, queryset: QuerySet[ReconciliationException]) -> None:
        self._act(request, queryset, services.exception_accept_ours, str(_("%(count)d flagged for the channel.")))

    @admin.action(description=_("Ask to write off the difference"), permissions=["change"])
    def request_write_off(
        self, request: HttpRequest, queryset: QuerySet[ReconciliationException]
    ) -> TemplateResponse | None:
        reason = action_reason(self, request, queryset, title=str(_("Ask to write off the difference")))
        if isinstance(reason, TemplateResponse):
            return reason
        self._each(
            request,
            queryset,
            lambda row: services.exception_write_off_request(exception_id=row.pk, operator=request.user, note=reason),
            str(_("%(count)d write-offs asked for: a second operator approves them.")),
        )
        return None

    @admin.action(description=_("Approve the write-off (a second operator)"), permissions=["change"])
    def approve_write_off(self, request: HttpRequest, queryset: QuerySet[ReconciliationException]) -> None:
        self._act(request, queryset, services.exception_write_off_approve, str(_("%(count)d written off.")))

    @admin.action(description=_("Ask the channel again (re-inquire)"), permissions=["change"])
    def reinquire(self, request: HttpRequest, queryset: QuerySet[ReconciliationException]) -> None:
        self._act(request, queryset, services.exception_reinquire, str(_("%(count)d asked again.")))


# --- disputes -------------------------------------------------------------------------------------------------------

DISPUTE_BANKS = ("payment__acquirer", "merchant__sponsor_bank")


class DisputeEvidenceInline(ReadOnlyAdminMixin, ScopedTabularInline):
    model = DisputeEvidence
    scope_field = tuple(f"dispute__{path}" for path in DISPUTE_BANKS)
    fields = ("created_at", "submitted_by", "text", "download", "content_type", "size", "sha256")
    readonly_fields = fields
    extra = 0

    @admin.display(description=_("file"))
    def download(self, row: DisputeEvidence) -> str:
        if not row.file:
            return ""
        url = reverse("admin:payments_dispute_evidence", args=[row.dispute_id, row.pk])
        return format_html('<a href="{}">{}</a>', url, row.filename)


class DisputeOpenForm(forms.Form):
    payment = forms.CharField(label=_("payment id"), max_length=40, help_text=_("pay_…"))
    kind = forms.ChoiceField(label=_("kind"), choices=DisputeKind.choices)
    amount = forms.IntegerField(
        label=_("amount (minor units)"), min_value=0, required=False, help_text=_("Empty: all that is left.")
    )
    reason_code = forms.CharField(label=_("reason code"), max_length=16, required=False)


@admin.register(Dispute)
class DisputeAdmin(PayoutActionsMixin, ScopedAdmin):
    """The dispute queue: the disputes of the payments a bank acquired or whose merchant it sponsors, with their days
    left; evidence downloadable by those operators only. Actions record the channel's outcome and send answers."""

    scope_field = DISPUTE_BANKS
    list_display = (
        "public_id",
        "created_at",
        "merchant",
        "payment",
        "kind",
        "reason_code",
        "amount",
        "status",
        "respond_by",
        "days_left",
        "answered_at",
        "holds_settlement",
    )
    list_filter = ("status", "kind", "opened_by", "holds_settlement", "respond_by")

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        # A cardholder's admin page links to their disputes, found through the payment.
        return lookup == "payment__cardholder__id__exact" or super().lookup_allowed(lookup, value, request)

    list_select_related = ("merchant", "payment")
    search_fields = ("public_id", "payment__public_id", "channel_reference", "merchant__code")
    money_fields = {"amount": MoneyField()}
    actions = ["record_won", "record_lost", "send_answer"]
    inlines = [DisputeEvidenceInline]
    fields = (
        "public_id",
        "payment",
        "merchant",
        "kind",
        "reason_code",
        "amount",
        "currency",
        "status",
        "respond_by",
        "opened_by",
        "opened_by_user",
        "channel",
        "channel_reference",
        "holds_settlement",
        "answered_at",
        "answer_error",
        "outcome_note",
        "points_reversed",
        "promotion_cost_returned",
        "cofunding_returned",
        "created_at",
        "closed_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("working days left"))
    def days_left(self, dispute: Dispute) -> str:
        from core.calendar import load_calendar, local_now

        if not dispute.is_open:
            return "—"
        today = local_now().date()
        if today > dispute.respond_by:
            return str(_("overdue"))
        return str(load_calendar().working_days_between(today, dispute.respond_by + dt.timedelta(days=1)))

    def get_urls(self) -> list[URLPattern]:
        def view(function: Any) -> Any:
            return self.admin_site.admin_view(function)

        return [
            path("open/", view(self.open_view), name="payments_dispute_open"),
            path(
                "<int:dispute_id>/evidence/<int:evidence_id>/",
                view(self.evidence_view),
                name="payments_dispute_evidence",
            ),
            *super().get_urls(),
        ]

    def evidence_view(self, request: HttpRequest, dispute_id: int, evidence_id: int) -> FileResponse:
        """One evidence file, to an operator who sees its dispute; the file is never reachable any other way."""
        dispute = self.get_queryset(request).filter(pk=dispute_id).first()
        if dispute is None or not self.has_view_permission(request, dispute):
            raise Http404("No such dispute in your scope.")
        row = DisputeEvidence.objects.filter(dispute=dispute, pk=evidence_id).exclude(file="").first()
        if row is None:
            raise Http404("No such file.")
        response = FileResponse(row.file.open("rb"), as_attachment=True, filename=row.filename)
        response["Content-Type"] = row.content_type
        response["X-Content-Type-Options"] = "nosniff"
        return response

    def open_view(self, request: HttpRequest) -> HttpResponse:
        """An operator opens a dispute on a payment of their bank's (the service checks the scope)."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        form = DisputeOpenForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            payment = PaymentIntent.objects.find(
                form.cleaned_data["payment"].strip(), lambda payments: payments.select_related("merchant")
            )
            if payment is None:
                form.add_error("payment", _("No such payment."))
            else:
                try:
                    dispute = services.dispute_open(
                        payment=payment,
                        kind=form.cleaned_data["kind"],
                        amount=form.cleaned_data["amount"],
                        reason_code=form.cleaned_data["reason_code"] or "",
                        opened_by=Dispute.OpenedBy.OPERATOR,
                        actor=request.user,
                    )
                except MengkaError as error:
                    form.add_error(None, error.message)
                else:
                    self.message_user(request, _("Dispute %(id)s opened.") % {"id": dispute.public_id})
                    return HttpResponseRedirect(reverse("admin:payments_dispute_change", args=[dispute.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": _("Open a dispute"),
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/payments/dispute/open.html", context)

    def _act(self, request: HttpRequest, queryset: QuerySet[Dispute], act: Any, done: str) -> None:
        self._each(request, queryset, act, done)

    @admin.action(description=_("Record the channel's decision: won"), permissions=["change"])
    def record_won(self, request: HttpRequest, queryset: QuerySet[Dispute]) -> None:
        self._act(
            request,
            queryset,
            lambda row: services.dispute_outcome_record(dispute_id=row.pk, outcome="won", actor=request.user),
            str(_("%(count)d recorded as won.")),
        )

    @admin.action(description=_("Record the channel's decision: lost"), permissions=["change"])
    def record_lost(self, request: HttpRequest, queryset: QuerySet[Dispute]) -> None:
        self._act(
            request,
            queryset,
            lambda row: services.dispute_outcome_record(dispute_id=row.pk, outcome="lost", actor=request.user),
            str(_("%(count)d recorded as lost: debited from the merchant's next settlement.")),
        )

    @admin.action(description=_("Send the answer to the channel"), permissions=["change"])
    def send_answer(self, request: HttpRequest, queryset: QuerySet[Dispute]) -> None:
        self._act(
            request,
            queryset,
            lambda row: services.dispute_answer_send(row.pk, actor=request.user),
            str(_("%(count)d answers sent.")),
        )
