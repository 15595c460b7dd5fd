"""The revenue share in the admin: the terms (alliance operators, four eyes), runs (alliance operators), statements
(each bank its own), the chart of the last twelve months and the statement downloads."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core.admin_base import ReadOnlyAdminMixin, ScopedAdmin, ScopedTabularInline
from core.admin_display import MoneyField, money_text
from core.errors import MengkaError
from core.replicas import replica_view

from . import selectors, services
from .models import (
    METRICS,
    AllianceCost,
    Approval,
    FourEyesVersion,
    MembershipFee,
    RevenueSharePolicy,
    RevenueShareRun,
    RevenueShareStatement,
)

CNY = MoneyField("CNY")
FOUR_EYES_FIELDS = ("status",)


class FourEyesAdmin(ScopedAdmin):
    """Drafts are edited; "submit" sends a draft, with its reason for the change, to the approval queue, where another
    alliance operator approves it (it is then in force) or rejects it (it stays a draft). Nothing approved, or waiting
    for approval, is changed, and nothing is deleted."""

    alliance_only = True
    actions = ("submit",)

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        if isinstance(obj, FourEyesVersion) and (
            obj.status != Approval.DRAFT or services.terms_requests_pending(type(obj), obj.pk).exists()
        ):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    @admin.action(description=gettext_lazy("Submit the selected drafts for approval (each with its reason)"))
    def submit(self, request: HttpRequest, queryset: models.QuerySet[Any]) -> None:
        model: type[FourEyesVersion] = self.model  # type: ignore[assignment]
        for version in queryset:
            try:
                services.terms_submit(model=model, version_id=version.pk, actor=request.user)
            except MengkaError as exc:
                messages.error(request, f"{version}: {exc.message}")
            else:
                messages.success(
                    request,
                    _("%(version)s: waiting for a second operator in the approval queue.") % {"version": version},
                )


class RevenueSharePolicyForm(forms.ModelForm):  # type: ignore[type-arg]
    """Shows by the fields what the service refuses; the service checks again when it writes."""

    class Meta:
        model = RevenueSharePolicy
        fields = (
            "effective_from",
            *(f"weight_{metric}" for metric in METRICS),
            *(f"cost_weight_{metric}" for metric in METRICS),
            "reason",
        )

    def weights(self, prefix: str) -> dict[str, Any]:
        return {metric: self.cleaned_data.get(f"{prefix}{metric}") for metric in METRICS}

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if any(value is None for value in (*self.weights("weight_").values(), *self.weights("cost_weight_").values())):
            return data
        try:
            services.policy_check(
                weights=self.weights("weight_"),
                cost_weights=self.weights("cost_weight_"),
                effective_from=data.get("effective_from"),
            )
        except MengkaError as exc:
            self.add_error("effective_from" if exc.param == "effective_from" else None, exc.message)
        return data


class RevenueSharePolicyAdmin(FourEyesAdmin):
    form = RevenueSharePolicyForm
    list_display = ("version", "effective_from", "status", "weights_text")
    list_filter = ("status",)
    readonly_fields = ("version", *FOUR_EYES_FIELDS, "created_at")
    fieldsets = (
        (None, {"fields": ("version", "effective_from", "reason")}),
        (gettext_lazy("Weights of the pool (sum 1)"), {"fields": tuple(f"weight_{m}" for m in METRICS)}),
        (gettext_lazy("Weights of the running costs (sum 1)"), {"fields": tuple(f"cost_weight_{m}" for m in METRICS)}),
        (gettext_lazy("Four eyes"), {"fields": (*FOUR_EYES_FIELDS, "created_at")}),
    )

    @admin.display(description=gettext_lazy("weights"))
    def weights_text(self, obj: RevenueSharePolicy) -> str:
        return " · ".join(f"{metric} {weight}" for metric, weight in obj.weights().items() if weight)

    def save_model(self, request: HttpRequest, obj: models.Model, form: Any, change: bool) -> None:
        assert isinstance(obj, RevenueSharePolicy)
        saved = services.policy_save(
            policy_id=obj.pk if change else None,
            weights=form.weights("weight_"),
            cost_weights=form.weights("cost_weight_"),
            effective_from=form.cleaned_data.get("effective_from"),
            reason=form.cleaned_data.get("reason", ""),
            actor=request.user,
        )
        obj.pk, obj.version = saved.pk, saved.version


class MembershipFeeForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = MembershipFee
        fields = ("bank", "amount", "effective_from", "reason")

    def clean_effective_from(self) -> Any:
        value = self.cleaned_data.get("effective_from")
        if value is not None and value.day != 1:
            raise forms.ValidationError(_("Terms start on the first day of a month."))
        return value


class MembershipFeeAdmin(FourEyesAdmin):
    form = MembershipFeeForm
    list_display = ("bank", "effective_from", "amount", "status")
    list_filter = ("status", "bank")
    list_select_related = ("bank",)
    readonly_fields = (*FOUR_EYES_FIELDS, "created_at")
    money_fields = {"amount": CNY}

    def save_model(self, request: HttpRequest, obj: models.Model, form: Any, change: bool) -> None:
        assert isinstance(obj, MembershipFee)
        saved = services.membership_fee_save(
            fee_id=obj.pk if change else None,
            bank_id=obj.bank_id,
            amount=obj.amount,
            effective_from=obj.effective_from,
            reason=obj.reason,
            actor=request.user,
        )
        obj.pk = saved.pk


class AllianceCostAdmin(ScopedAdmin):
    """The alliance's running costs per month; a month already run is restated when it is run again."""

    alliance_only = True
    list_display = ("month", "description", "amount", "created_at")
    list_filter = ("month",)
    money_fields = {"amount": CNY}


class StatementInline(ReadOnlyAdminMixin, ScopedTabularInline):
    model = RevenueShareStatement
    scope_field = "bank"
    fields = ("bank", "share", "amount", "cost", "net", "amount_difference", "net_difference", "downloads")
    readonly_fields = fields
    money_fields = dict.fromkeys(("amount", "cost", "net", "amount_difference", "net_difference"), CNY)
    extra = 0
    can_delete = False

    @admin.display(description=gettext_lazy("statement"))
    def downloads(self, obj: RevenueShareStatement) -> str:
        return statement_links(obj)


def statement_links(obj: RevenueShareStatement) -> str:
    return format_html(
        '<a href="{}">{}</a> · <a href="{}">{}</a> · <a href="{}">{}</a>',
        reverse("admin:alliance_revenuesharestatement_change", args=[obj.pk]),
        _("open"),
        reverse("admin:alliance_revenuesharestatement_csv", args=[obj.pk]),
        _("CSV"),
        reverse("admin:alliance_revenuesharestatement_print", args=[obj.pk]),
        _("printable"),
    )


class RunMonthForm(forms.Form):
    month = forms.CharField(label=gettext_lazy("month (YYYY-MM)"), max_length=7)


class RevenueShareRunAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    alliance_only = True
    list_display = ("month_text", "version", "status", "policy", "pool", "costs", "created_by", "created_at")
    list_filter = ("status",)
    list_select_related = ("policy", "created_by")
    inlines = [StatementInline]
    actions = ("run_again",)
    change_list_template = "admin/alliance/revenuesharerun/change_list.html"
    money_fields = {
        "pool": CNY,
        "costs": CNY,
        "membership_fees": CNY,
        "fee_share_units": MoneyField("CNY", absolute=4),
        "exchange_fee_units": MoneyField("CNY", absolute=4),
    }
    fields = (
        "month",
        "version",
        "status",
        "policy",
        "previous",
        "fee_share_units",
        "exchange_fee_units",
        "membership_fees",
        "pool",
        "costs",
        "pool_lines",
        "unpooled",
        "input_digest",
        "created_by",
        "created_at",
    )
    readonly_fields = ("pool_lines",)

    @admin.display(description=gettext_lazy("month"), ordering="month")
    def month_text(self, obj: RevenueShareRun) -> str:
        return f"{obj.month:%Y-%m}"

    @admin.display(description=gettext_lazy("membership fees and running costs"))
    def pool_lines(self, obj: RevenueShareRun) -> str:
        membership = obj.totals.get("membership", {})
        costs = obj.totals.get("costs", [])
        rows = [
            (_("membership fee %(bank)s") % {"bank": code}, money_text(fee, "CNY")) for code, fee in membership.items()
        ]
        rows += [
            (_("cost: %(text)s") % {"text": cost["description"]}, money_text(cost["amount"], "CNY")) for cost in costs
        ]
        return format_html_join("", "<div>{}: {}</div>", rows) or "-"

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.run_month_view)
        return [path("run/", view, name="alliance_revenuesharerun_run"), *super().get_urls()]

    def _run(self, request: HttpRequest, month: Any) -> RevenueShareRun | None:
        try:
            run = services.revenue_share_run(month, actor=request.user)
        except MengkaError as exc:
            messages.error(request, exc.message)
            return None
        messages.success(request, _("%(run)s is the month's current version.") % {"run": run})
        return run

    def run_month_view(self, request: HttpRequest) -> HttpResponse:
        """Runs a month by hand: its current version when nothing changed, else a new version."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = RunMonthForm(request.POST or None, initial={"month": f"{services.previous_month():%Y-%m}"})
        if request.method == "POST" and form.is_valid():
            run = self._run(request, form.cleaned_data["month"])
            if run is not None:
                return HttpResponseRedirect(reverse("admin:alliance_revenuesharerun_change", args=[run.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": _("Run the revenue share of a month"),
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/alliance/revenuesharerun/run.html", context)

    @admin.action(description=gettext_lazy("Run the selected months again (a new version if anything changed)"))
    def run_again(self, request: HttpRequest, queryset: models.QuerySet[Any]) -> None:
        for month in sorted({run.month for run in queryset}):
            self._run(request, month)


class RevenueShareStatementAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    """A bank's statements: its operators and auditors see their own bank's, alliance operators every bank's."""

    scope_field = "bank"
    list_display = (
        "month_text", "version", "bank", "share", "amount", "cost", "net", "net_difference", "run_status", "links",
    )  # fmt: skip
    list_filter = ("run__status", "run__month", "bank")
    list_select_related = ("run", "bank")
    change_list_template = "admin/alliance/revenuesharestatement/change_list.html"
    money_fields = dict.fromkeys(
        ("amount", "cost", "net", "amount_difference", "cost_difference", "net_difference"), CNY
    )
    fields = (
        "run",
        "bank",
        "metric_table",
        "share",
        "cost_share",
        "amount",
        "cost",
        "net",
        "previous",
        "amount_difference",
        "cost_difference",
        "net_difference",
        "links",
    )
    readonly_fields = ("metric_table", "links")

    @admin.display(description=gettext_lazy("month"), ordering="run__month")
    def month_text(self, obj: RevenueShareStatement) -> str:
        return f"{obj.run.month:%Y-%m}"

    @admin.display(description=gettext_lazy("version"), ordering="run__version")
    def version(self, obj: RevenueShareStatement) -> int:
        return obj.run.version

    @admin.display(description=gettext_lazy("run status"))
    def run_status(self, obj: RevenueShareStatement) -> str:
        return obj.run.get_status_display()

    @admin.display(description=gettext_lazy("downloads"))
    def links(self, obj: RevenueShareStatement) -> str:
        return statement_links(obj)

    @admin.display(description=gettext_lazy("metrics"))
    def metric_table(self, obj: RevenueShareStatement) -> str:
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    line["label"],
                    line["value_text"],
                    line["total_text"],
                    line["normalised"],
                    line["weight"],
                    line["effective_weight"],
                    line["weighted_share"],
                )
                for line in selectors.revenue_statement_lines(obj)
            ),
        )
        return format_html(
            "<table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>"
            "</thead><tbody>{}</tbody></table>",
            _("metric"),
            _("value"),
            _("all banks"),
            _("normalised share"),
            _("weight"),
            _("effective weight"),
            _("weighted share"),
            rows,
        )

    def get_urls(self) -> list[URLPattern]:
        def view(function: Any) -> Any:
            return self.admin_site.admin_view(function)

        return [
            path("chart/", view(self.chart_view), name="alliance_revenuesharestatement_chart"),
            path("<int:statement_id>/csv/", view(self.csv_view), name="alliance_revenuesharestatement_csv"),
            path("<int:statement_id>/print/", view(self.print_view), name="alliance_revenuesharestatement_print"),
            *super().get_urls(),
        ]

    def _statement(self, request: HttpRequest, statement_id: int) -> RevenueShareStatement:
        statement = self.get_queryset(request).select_related("run__policy", "bank").filter(pk=statement_id).first()
        if statement is None or not self.has_view_permission(request, statement):
            raise Http404("No such statement in your scope.")
        return statement

    def _filename(self, statement: RevenueShareStatement, extension: str) -> str:
        return f"revenue-share-{statement.run.month:%Y-%m}-v{statement.run.version}-{statement.bank.code}.{extension}"

    @method_decorator(replica_view)
    def csv_view(self, request: HttpRequest, statement_id: int) -> HttpResponse:
        statement = self._statement(request, statement_id)
        response = HttpResponse(selectors.revenue_statement_csv(statement), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{self._filename(statement, "csv")}"'
        return response

    @method_decorator(replica_view)
    def print_view(self, request: HttpRequest, statement_id: int) -> HttpResponse:
        """The statement as a page to print or save as PDF: a print stylesheet, no script."""
        statement = self._statement(request, statement_id)
        run = statement.run
        context = {
            "statement": statement,
            "run": run,
            "lines": selectors.revenue_statement_lines(statement),
            "money": {
                name: money_text(getattr(statement, name), "CNY")
                for name in ("amount", "cost", "net", "amount_difference", "cost_difference", "net_difference")
            },
            "pool": {
                "fee_share": money_text(run.fee_share_units, "CNY", absolute=4),
                "exchange_fees": money_text(run.exchange_fee_units, "CNY", absolute=4),
                "membership_fees": money_text(run.membership_fees, "CNY"),
                "pool": money_text(run.pool, "CNY"),
                "costs": money_text(run.costs, "CNY"),
            },
        }
        response = TemplateResponse(request, "admin/alliance/revenuesharestatement/print.html", context)
        if request.GET.get("download"):
            response["Content-Disposition"] = f'attachment; filename="{self._filename(statement, "html")}"'
        return response

    @method_decorator(replica_view)
    def chart_view(self, request: HttpRequest) -> HttpResponse:
        """Each bank's share of the last twelve months (the latest version of each month), as a chart drawn by the
        locally served Chart.js, with the same numbers in a table beside it."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        history = selectors.share_history(self.get_queryset(request))
        context = {
            **self.admin_site.each_context(request),
            "title": _("Revenue share of the last twelve months"),
            "history": history,
            "chart_data": history.chart_data(),
            "table": history.table(),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/alliance/revenuesharestatement/chart.html", context)


admin.site.register(RevenueSharePolicy, RevenueSharePolicyAdmin)
admin.site.register(MembershipFee, MembershipFeeAdmin)
admin.site.register(AllianceCost, AllianceCostAdmin)
admin.site.register(RevenueShareRun, RevenueShareRunAdmin)
admin.site.register(RevenueShareStatement, RevenueShareStatementAdmin)
