from __future__ import annotations

import datetime
from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.db.models import BigIntegerField, Func, QuerySet, TextField
from django.db.models.functions import Cast
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django_celery_beat import admin as beat_admin
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from . import approvals, services
from .admin_base import ReadOnlyAdminMixin, ScopedAdmin, ScopeMixin, lift_signin_lockouts
from .errors import MengkaError
from .forms import ApprovalDecisionForm
from .jobs import job_eta_seconds, job_rate, shared_jobs
from .models import ApprovalRequest, ArchivedMonth, AuditLog, CalendarDay, IdempotencyRecord, JobRun
from .partitions import archived_rows
from .replicas import replica_view
from .scoping import operator_scope

admin.site.site_header = _("Mengka 盟卡 operations")
admin.site.site_title = _("Mengka operations")
admin.site.index_title = _("Alliance operations")


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    scope_field = "bank_id"
    list_display = ("at", "actor_label", "action", "object_type", "object_id", "object_repr", "request_id")
    list_filter = ("action", "object_type")
    search_fields = ("object_id", "actor_label", "request_id", "object_repr")
    date_hierarchy = "at"


@admin.register(JobRun)
class JobRunAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    """Job runs, watched while they run (the page of a running job reloads itself). Bank operators see the runs of the
    jobs that work on every bank's data (`core.jobs.register_job(shared=True)`); the others are the alliance's. Those
    with the "re-run" permission run a job again through its own, idempotent, entry point."""

    shared_read = True
    list_display = ("job", "period", "status", "started_at", "finished_at", "progress", "rate", "eta")
    list_filter = ("status", "job")
    search_fields = ("job", "period")
    readonly_fields = ("progress", "rate", "eta", "counts", "error")
    actions = ["rerun"]
    change_form_template = "admin/core/jobrun/change_form.html"
    change_list_template = "admin/core/jobrun/change_list.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        if operator_scope(request.user).everything:
            return queryset
        return queryset.filter(job__in=shared_jobs())

    @admin.display(description=_("progress"))
    def progress(self, obj: JobRun) -> str:
        percent = obj.progress_percent
        label = f"{obj.done:,} / {obj.total:,}" if obj.total else f"{obj.done:,}"
        if percent is None:
            return label
        return format_html(
            '<span class="job-progress"><progress max="100" value="{}">{}%</progress> {}% · {}</span>',
            percent,
            percent,
            percent,
            label,
        )

    @admin.display(description=_("rate (items/s)"))
    def rate(self, obj: JobRun) -> str:
        rate = job_rate(obj)
        return "—" if rate is None else f"{rate:,.1f}"

    @admin.display(description=_("time left"))
    def eta(self, obj: JobRun) -> str:
        seconds = job_eta_seconds(obj)
        if seconds is None:
            return "—"
        return str(datetime.timedelta(seconds=round(seconds)))

    def has_rerun_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("core.rerun_jobrun"))

    @admin.action(description=_("Run the selected jobs again"), permissions=["rerun"])
    def rerun(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for run in queryset:
            try:
                task = services.job_rerun(run_id=run.pk, actor=request.user)
            except MengkaError as error:
                self.message_user(request, f"{run.job}: {error.message}", messages.ERROR)
            else:
                self.message_user(request, _("%(job)s started again (%(task)s).") % {"job": run.job, "task": task})


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    """What a request with an idempotency key did: for support, when a merchant asks what became of a retried call.
    *Interrupted* keys stopped on an unexpected error after recording their progress; the next request with the key
    resumes them."""

    alliance_only = True
    list_display = ("scope", "key", "operation", "state", "status_code", "created_at", "completed_at")
    list_filter = ("state", "operation")
    search_fields = ("=key", "=scope")
    date_hierarchy = "created_at"


@admin.register(ArchivedMonth)
class ArchivedMonthAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    """The months the daily partitions job detached to archive tables (docs/scaling.md, "Archiving"): which table,
    which month, the archive table that holds its rows now, and when."""

    alliance_only = True
    list_display = ("table", "month", "archive_table", "archived_at", "size", "rows")
    list_filter = ("table",)
    search_fields = ("=archive_table",)
    date_hierarchy = "month"

    def get_urls(self) -> list[URLPattern]:
        rows = path(
            "<int:record_id>/rows/",
            self.admin_site.admin_view(self.rows_view),  # type: ignore[arg-type]
            name="core_archivedmonth_rows",
        )
        return [rows, *super().get_urls()]

    @admin.display(description=_("find in the archive"))
    def rows(self, obj: ArchivedMonth) -> str:
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:core_archivedmonth_rows", args=[obj.pk]), _("find a row")
        )

    @method_decorator(replica_view)
    def rows_view(self, request: HttpRequest, record_id: int) -> HttpResponse:
        """A row of the archive found by its id, public id, key or reference, or by the payment, transaction, dispute
        or event it belongs to (`core.partitions.archived_rows`): every column as stored, read only."""
        record = self.get_queryset(request).filter(pk=record_id).first()
        if record is None or not self.has_view_permission(request, record):
            raise Http404("No such archived month.")
        term = request.GET.get("q", "")
        found, error = None, ""
        if term.strip():
            try:
                found = archived_rows(record, term)
            except MengkaError as refused:
                error = refused.message
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Find a row in %(archive)s") % {"archive": record.archive_table},
            "record": record,
            "term": term,
            "error": error,
            "found": found,
            "rows": [list(zip(found.columns, row, strict=True)) for row in found.rows] if found else [],
        }
        return TemplateResponse(request, "admin/core/archivedmonth/rows.html", context)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # The archive table's size on disk, read with the rows; NULL when the table has gone.
        table = Func(Cast("archive_table", TextField()), function="to_regclass")
        return (
            super()
            .get_queryset(request)
            .annotate(size_bytes=Func(table, function="pg_total_relation_size", output_field=BigIntegerField()))
        )

    @admin.display(description=_("size"), ordering="size_bytes")
    def size(self, obj: ArchivedMonth) -> str:
        size = getattr(obj, "size_bytes", None)
        return str(_("missing")) if size is None else filesizeformat(size)


@admin.register(CalendarDay)
class CalendarDayAdmin(ScopedAdmin):
    alliance_only = True
    list_display = ("date", "kind", "name", "provisional")
    list_filter = ("kind", "provisional")
    search_fields = ("name",)
    date_hierarchy = "date"

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        services.calendar_changed()

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        super().delete_model(request, obj)
        services.calendar_changed()


# Django's and Celery beat's own tables: alliance operators only, through the same audited base.
for model in (User, Group, PeriodicTask, ClockedSchedule, CrontabSchedule, SolarSchedule, IntervalSchedule):
    if admin.site.is_registered(model):
        admin.site.unregister(model)


@admin.register(User)
class ScopedUserAdmin(ScopedAdmin, UserAdmin):  # type: ignore[misc]
    alliance_only = True
    actions = ["lift_signin_lockout"]

    @admin.action(description=_("Lift the sign-in lockout of the selected users"), permissions=["change"])
    def lift_signin_lockout(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        lift_signin_lockouts(self, request, list(queryset))


@admin.register(Group)
class ScopedGroupAdmin(ScopedAdmin, GroupAdmin):  # type: ignore[misc]
    alliance_only = True


class ScopedPeriodicTaskInline(ScopeMixin, beat_admin.PeriodicTaskInline):
    alliance_only = True


@admin.register(PeriodicTask)
class ScopedPeriodicTaskAdmin(ScopedAdmin, beat_admin.PeriodicTaskAdmin):
    alliance_only = True


@admin.register(ClockedSchedule)
class ScopedClockedScheduleAdmin(ScopedAdmin, beat_admin.ClockedScheduleAdmin):
    alliance_only = True
    inlines = [ScopedPeriodicTaskInline]


@admin.register(CrontabSchedule)
class ScopedCrontabScheduleAdmin(ScopedAdmin, beat_admin.CrontabScheduleAdmin):
    alliance_only = True
    inlines = [ScopedPeriodicTaskInline]


@admin.register(SolarSchedule)
class ScopedSolarScheduleAdmin(ScopedAdmin, beat_admin.SolarScheduleAdmin):
    alliance_only = True
    inlines = [ScopedPeriodicTaskInline]


@admin.register(IntervalSchedule)
class ScopedIntervalScheduleAdmin(ScopedAdmin, beat_admin.IntervalScheduleAdmin):
    alliance_only = True
    inlines = [ScopedPeriodicTaskInline]


class ApprovalQueueFilter(admin.SimpleListFilter):
    """The operator's two queues: what waits for them to decide, and what they asked for."""

    title = _("queue")
    parameter_name = "queue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("waiting", _("Waiting for me")), ("mine", _("My requests"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "waiting":
            return queryset.filter(pk__in=approvals.approvals_waiting_for(request.user).values("pk"))
        if self.value() == "mine":
            return queryset.filter(maker_id=request.user.pk)
        return queryset


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(ReadOnlyAdminMixin, ScopedAdmin):
    """The maker-checker queue. Requests are made from each feature's own page; here a second operator approves or
    rejects them (a reason required), and a maker cancels their own. Every kind's payload is shown as its rows."""

    scope_field = "bank_id"
    list_display = ("id", "kind_label", "summary", "status", "maker", "created_at", "expires_at", "checker")
    list_select_related = ("maker", "checker")
    list_filter = (ApprovalQueueFilter, "status", "kind")
    search_fields = ("=id", "reason", "maker__username")
    date_hierarchy = "created_at"

    @admin.display(description=_("kind"))
    def kind_label(self, obj: ApprovalRequest) -> str:
        return approvals.approval_kind_label(obj.kind)

    @admin.display(description=_("reason"))
    def summary(self, obj: ApprovalRequest) -> str:
        # The reason, not the payload: describing a payload reads the rows it names (a query per line); the
        # request's page describes it in full.
        return obj.reason[:120]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        waiting = approvals.approvals_waiting_for(request.user).filter(pk__in=self.get_queryset(request).values("pk"))
        return super().changelist_view(request, {**(extra_context or {}), "waiting_count": waiting.count()})

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The request, readable, with what this operator may do with it: approve or reject (a checker), cancel (its
        maker). A plain form: it works without JavaScript."""
        obj = self.get_queryset(request).filter(pk=object_id).first() if object_id.isdigit() else None
        if obj is None or not self.has_view_permission(request, obj):
            raise Http404("No such approval request in your scope.")
        form = ApprovalDecisionForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            decision, reason = form.cleaned_data["decision"], form.cleaned_data["reason"]
            try:
                if decision == "approve":
                    approvals.approval_approve(request_id=obj.pk, checker=request.user)  # type: ignore[arg-type]
                    self.message_user(request, _("Request %(id)s approved and applied.") % {"id": obj.pk})
                elif decision == "reject":
                    approvals.approval_reject(request_id=obj.pk, checker=request.user, reason=reason)  # type: ignore[arg-type]
                    self.message_user(request, _("Request %(id)s rejected.") % {"id": obj.pk})
                else:
                    approvals.approval_cancel(request_id=obj.pk, maker=request.user)  # type: ignore[arg-type]
                    self.message_user(request, _("Request %(id)s cancelled.") % {"id": obj.pk})
            except MengkaError as exc:
                form.add_error("reason" if exc.param == "reason" else None, exc.message)
            else:
                return HttpResponseRedirect(request.path)
        pending = obj.status == ApprovalRequest.Status.PENDING
        refusal = approvals.checker_refusal(obj, request.user) if pending else None
        context = {
            **self.admin_site.each_context(request),
            "title": _("Approval request %(id)s") % {"id": obj.pk},
            "opts": self.model._meta,
            "original": obj,
            "kind_label": approvals.approval_kind_label(obj.kind),
            "rows": approvals.approval_describe(obj),
            "may_decide": pending and refusal is None,
            "refusal": refusal if pending and obj.maker_id != request.user.pk else None,
            "may_cancel": pending and obj.maker_id == request.user.pk,
            "form": form,
            "history": AuditLog.objects.filter(object_type="core.approvalrequest", object_id=str(obj.pk)).order_by(
                "at", "id"
            ),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/core/approvalrequest/decide.html", context)
