"""Clearing in the admin: runs (alliance operators), positions with their components and a statement per position
(a bank's operators and auditors see their own bank's; alliance operators all), instructions. Everything here is
written by the clearing run and its jobs: read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from core.admin_base import ReadOnlyAdminMixin, ScopedAdmin, ScopedTabularInline
from core.admin_display import MoneyField, money_text
from core.errors import MengkaError
from core.replicas import replica_view
from core.scoping import is_alliance_operator

from . import selectors, services
from .models import ClearingComponent, ClearingInstruction, ClearingPosition, ClearingRun

UNITS = MoneyField(currency="run.currency", absolute=4)  # ledger units: ten-thousandths whatever the currency
RUN_UNITS = MoneyField(absolute=4)
POSITION_MINOR = MoneyField(currency="run.currency")


class ClearingPositionInline(ReadOnlyAdminMixin, ScopedTabularInline):
    model = ClearingPosition
    scope_field = "bank"
    fields = ("party_code", "bank", "receivable", "payable", "net", "net_minor", "rounding", "entries_count")
    readonly_fields = fields
    extra = 0
    can_delete = False
    money_fields = {
        "receivable": UNITS,
        "payable": UNITS,
        "net": UNITS,
        "rounding": UNITS,
        "net_minor": POSITION_MINOR,
    }


class ClearingInstructionInline(ReadOnlyAdminMixin, ScopedTabularInline):
    model = ClearingInstruction
    scope_field = "bank"
    fields = ("reference", "party_code", "direction", "amount", "status", "attempts", "sent_at", "finished_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    money_fields = {"amount": MoneyField()}


@admin.register(ClearingRun)
class ClearingRunAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    """The alliance's: a bank sees its part of a run through its positions."""

    alliance_only = True
    list_display = (
        "business_day", "currency", "status", "transactions_count", "entries_count", "positions_count",
        "instructions_count", "gross", "netted", "netted_at", "settled_at",
    )  # fmt: skip
    list_filter = ("status", "currency")
    date_hierarchy = "business_day"
    inlines = [ClearingPositionInline, ClearingInstructionInline]
    money_fields = {"gross": RUN_UNITS, "netted": MoneyField()}


class ClearingComponentInline(ReadOnlyAdminMixin, ScopedTabularInline):
    model = ClearingComponent
    fk_name = "position"
    scope_field = "bank"
    fields = ("kind", "merchant", "count", "receivable", "payable", "amount")
    readonly_fields = fields
    extra = 0
    can_delete = False
    money_fields = {"receivable": UNITS, "payable": UNITS, "amount": UNITS}


@admin.register(ClearingPosition)
class ClearingPositionAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    scope_field = "bank"
    list_display = (
        "run", "party_code", "bank", "receivable", "payable", "net", "net_minor", "rounding", "entries_count",
        "statement",
    )  # fmt: skip
    list_select_related = ("run", "bank")
    list_filter = ("run__currency", "run__business_day")
    search_fields = ("party_code",)
    inlines = [ClearingComponentInline]
    readonly_fields = ("statement",)
    money_fields = {
        "receivable": UNITS,
        "payable": UNITS,
        "net": UNITS,
        "rounding": UNITS,
        "net_minor": POSITION_MINOR,
    }

    @admin.display(description=_("statement"))
    def statement(self, obj: ClearingPosition) -> str:
        return format_html(
            '<a href="{}">{}</a> · <a href="{}">{}</a>',
            reverse("admin:alliance_clearingposition_statement", args=[obj.pk]),
            _("statement (print)"),
            reverse("admin:alliance_clearingposition_statement_csv", args=[obj.pk]),
            _("CSV"),
        )

    def get_urls(self) -> list[URLPattern]:
        def view(function: Any) -> Any:
            return self.admin_site.admin_view(function)

        return [
            path("<int:position_id>/statement/", view(self.statement_view), name="alliance_clearingposition_statement"),
            path(
                "<int:position_id>/statement.csv",
                view(self.statement_csv_view),
                name="alliance_clearingposition_statement_csv",
            ),
            *super().get_urls(),
        ]

    def _position(self, request: HttpRequest, position_id: int) -> ClearingPosition:
        position = self.get_queryset(request).select_related("run", "bank").filter(pk=position_id).first()
        if position is None or not self.has_view_permission(request, position):
            raise Http404("No such clearing position in your scope.")
        return position

    @method_decorator(replica_view)
    def statement_view(self, request: HttpRequest, position_id: int) -> HttpResponse:
        """The statement as one printable page (PDF-ready: a print stylesheet, no script): every figure, every line."""
        position = self._position(request, position_id)
        currency = position.run.currency

        def units(value: int) -> str:
            return money_text(value, currency, absolute=4)

        components = [
            {
                "kind": component.get_kind_display(),
                "merchant": component.merchant.code if component.merchant else "",
                "count": component.count,
                "receivable": units(component.receivable),
                "payable": units(component.payable),
                "amount": units(component.amount),
            }
            for component in selectors.statement_components(position)
        ]
        lines = [{"line": line, "amount": units(line.amount)} for line in selectors.statement_lines_all(position)]
        context = {
            "position": position,
            "run": position.run,
            "party": selectors.party_name(position),
            "figures": [
                (_("receivable"), units(position.receivable)),
                (_("payable"), units(position.payable)),
                (_("net (exact)"), units(position.net)),
                (_("net (rounded)"), money_text(position.net_minor, currency)),
                (_("rounding adjustment"), units(position.rounding)),
            ],
            "components": components,
            "lines": lines,
        }
        return TemplateResponse(request, "admin/alliance/clearingposition/statement.html", context)

    @method_decorator(replica_view)
    def statement_csv_view(self, request: HttpRequest, position_id: int) -> StreamingHttpResponse:
        position = self._position(request, position_id)
        response = StreamingHttpResponse(selectors.statement_csv(position), content_type="text/csv; charset=utf-8")
        name = f"clearing-{position.run.business_day.isoformat()}-{position.run.currency}-{position.party_code}"
        response["Content-Disposition"] = f'attachment; filename="{name.replace("~", "")}.csv"'
        return response


@admin.register(ClearingInstruction)
class ClearingInstructionAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    scope_field = "bank"
    list_display = (
        "reference", "run", "party_code", "direction", "amount", "currency", "status", "attempts", "channel_id",
        "failure_reason", "sent_at", "finished_at",
    )  # fmt: skip
    list_select_related = ("run",)
    list_filter = ("status", "direction", "currency")
    search_fields = ("reference", "party_code", "channel_id")
    money_fields = {"amount": MoneyField()}
    actions = ["resend"]

    def has_resend_permission(self, request: HttpRequest) -> bool:
        return is_alliance_operator(request.user) and request.user.has_perm("alliance.resend_clearinginstruction")

    @admin.action(description=_("Send the selected failed instructions again"), permissions=["resend"])
    def resend(self, request: HttpRequest, queryset: QuerySet[ClearingInstruction]) -> None:
        """Each under a new reference; the next poll sends them. A refusal names its instruction; the others go on."""
        resent = 0
        for instruction in queryset:
            try:
                services.instruction_resend(instruction_id=instruction.pk, operator=request.user)
            except MengkaError as error:
                self.message_user(request, f"{instruction.reference}: {error.message}", messages.ERROR)
            else:
                resent += 1
        if resent:
            self.message_user(
                request,
                _("%(count)d instructions to send again, under new references.") % {"count": resent},
                messages.SUCCESS,
            )
