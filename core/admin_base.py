"""The scoped admin every model registers through.

Each admin declares where its rows belong: `scope_field`, the ORM path to the member bank ("bank", "card__bank"),
`alliance_only = True` for alliance-wide tables, or `shared_read = True` for alliance-wide terms every bank works under
(read by every operator and auditor, changed by alliance operators only). Change lists, change forms (404 outside
the scope), search, filters, autocomplete, foreign-key pickers, inlines and actions all go through `get_queryset`, so
they follow the scope.
Every add, change and delete is written to the audit log with before and after, stamped with the bank the acting
operator works for. An object's history page shows a bank operator only the entries of their own bank's people (and
of alliance operators, unnamed).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from django.contrib import admin, messages
from django.contrib.admin import RelatedOnlyFieldListFilter, helpers
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import PAGE_VAR, SEARCH_VAR
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist, PermissionDenied
from django.db import models
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.functional import Promise
from django.utils.translation import gettext as _

from .admin_display import MoneyColumnsMixin
from .audit import audit_record, snapshot
from .errors import MengkaError
from .partitions import archived_before, archived_months_holding
from .replicas import replica_view
from .scoping import ScopeField, bank_ids_of, operator_scope, scope_queryset
from .selectors import rows_streamed
from .signin import signin_unlock


class ScopeMixin:
    scope_field: ClassVar[ScopeField | None] = None
    alliance_only: ClassVar[bool] = False
    shared_read: ClassVar[bool] = False
    model: type[models.Model]
    admin_site: admin.AdminSite

    def _scope(self, request: HttpRequest) -> Any:
        return operator_scope(request.user)

    def _visible(self, request: HttpRequest) -> bool:
        scope = self._scope(request)
        if scope.everything:
            return True
        if scope.nothing or self.alliance_only:
            return False
        return self.shared_read or bool(self.scope_field)

    def _writable(self, request: HttpRequest, obj: models.Model | None) -> bool:
        scope = self._scope(request)
        if scope.everything:
            return True
        if self.shared_read or not self._visible(request) or not scope.writable_bank_ids:
            return False
        if obj is None or self.scope_field is None:
            return True
        banks = bank_ids_of(obj, self.scope_field)
        return bool(banks) and any(scope.can_write(bank) for bank in banks)

    def get_queryset(self, request: HttpRequest) -> models.QuerySet[Any]:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        if self.shared_read and self._visible(request):
            return queryset
        return scope_queryset(queryset, self._scope(request), self.scope_field, self.alliance_only)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._visible(request) and super().has_module_permission(request)  # type: ignore[misc]

    def has_view_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return self._visible(request) and super().has_view_permission(request, obj)  # type: ignore[misc]

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return self._writable(request, None) and super().has_add_permission(request, *args)  # type: ignore[misc]

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return self._writable(request, obj) and super().has_change_permission(request, obj)  # type: ignore[misc]

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return self._writable(request, obj) and super().has_delete_permission(request, obj)  # type: ignore[misc]

    def _related_queryset(self, db_field: models.Field[Any, Any], request: HttpRequest) -> models.QuerySet[Any] | None:
        related_admin = self.admin_site._registry.get(db_field.related_model)  # type: ignore[arg-type]
        if isinstance(related_admin, ScopeMixin):
            return related_admin.get_queryset(request)
        return None

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if "queryset" not in kwargs:
            queryset = self._related_queryset(db_field, request)
            if queryset is not None:
                kwargs["queryset"] = queryset
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if "queryset" not in kwargs:
            queryset = self._related_queryset(db_field, request)
            if queryset is not None:
                kwargs["queryset"] = queryset
        return super().formfield_for_manytomany(db_field, request, **kwargs)  # type: ignore[misc]


HISTORY_PAGE_SIZE = 100  # Django's own page size for an object's history
EXPORT_CHUNK_ROWS = 2000
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """A cell a spreadsheet will not run: text starting like a formula gets a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


class _Echo:
    def write(self, value: str) -> str:
        return value


class CsvExportMixin:
    """An "Export CSV" link on every change list: the list as filtered, searched and ordered on screen (and scoped: the
    rows come from the admin's own change list), streamed from a server-side cursor in chunks: no list is held in
    memory.

    Columns: `export_fields` when declared, else the fields among `list_display` (a foreign key exported as its id).
    Each export is audited (`admin.export`: the list, the query string, the rows sent, and whether it ran to the end),
    when the stream ends or the client leaves."""

    export_fields: ClassVar[tuple[str, ...] | None] = None
    model: type[models.Model]
    admin_site: admin.AdminSite

    def get_urls(self) -> list[URLPattern]:
        info = (self.model._meta.app_label, self.model._meta.model_name)
        export = path(
            "export.csv",
            self.admin_site.admin_view(self.export_csv_view),  # type: ignore[arg-type]
            name="{}_{}_export".format(*info),
        )
        return [export, *super().get_urls()]  # type: ignore[misc]

    def get_export_fields(self, request: HttpRequest) -> list[str]:
        if self.export_fields is not None:
            return list(self.export_fields)
        names: list[str] = []
        for item in self.list_display:  # type: ignore[attr-defined]
            if not isinstance(item, str):
                continue
            try:
                field = self.model._meta.get_field(item)
            except FieldDoesNotExist:
                continue
            if field.concrete and not field.many_to_many:
                names.append(field.attname if field.is_relation else field.name)  # type: ignore[union-attr]
        return names or ["pk"]

    @method_decorator(replica_view)
    def export_csv_view(self, request: HttpRequest) -> Any:
        if not self.has_view_permission(request):  # type: ignore[attr-defined]
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)  # type: ignore[attr-defined]
        except IncorrectLookupParameters:
            return HttpResponseBadRequest(_("Those filters do not apply to this list."))
        queryset = changelist.get_queryset(request)
        fields = self.get_export_fields(request)
        label = self.model._meta.label_lower
        filename = f"{label.replace('.', '-')}-{timezone.localtime():%Y%m%d-%H%M%S}.csv"
        response = StreamingHttpResponse(
            self._csv_rows(request, queryset, fields, label), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response

    def _csv_rows(
        self, request: HttpRequest, queryset: models.QuerySet[Any], fields: list[str], label: str
    ) -> Iterator[str]:
        writer = csv.writer(_Echo())
        rows = 0
        finished = False
        try:
            yield "\ufeff" + writer.writerow([self._column_title(name) for name in fields])
            for row in rows_streamed(queryset.values_list(*fields), chunk_size=EXPORT_CHUNK_ROWS):
                rows += 1
                yield writer.writerow([csv_safe(value) for value in row])
            finished = True
        finally:
            audit_record(
                actor=request.user,
                action="admin.export",
                object_type=label,
                after={"query": request.GET.urlencode(), "rows": rows, "complete": finished, "columns": fields},
            )

    def _column_title(self, name: str) -> str:
        if name == "pk":
            return "id"
        for field in self.model._meta.concrete_fields:
            if name in (field.name, field.attname):
                return str(field.verbose_name) + (" (id)" if field.is_relation else "")
        return name


class ScopedAdmin(CsvExportMixin, MoneyColumnsMixin, ScopeMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    object_history_template = "admin/scoped_object_history.html"
    # Django counts a list twice, filtered and whole; for a scoped list the "whole" is the scope again, a second
    # COUNT of up to every cardholder of a bank. Once is enough ("Show all" replaces the total).
    show_full_result_count = False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        response = super().changelist_view(request, extra_context)
        if isinstance(response, TemplateResponse) and isinstance(response.template_name, list):
            # Django's lookup (the model's own list template, then the app's) ends in the scoped list, with its CSV
            # export, rather than the stock one; a model's own template extends the scoped one.
            response.template_name = [
                "admin/scoped_change_list.html" if name == "admin/change_list.html" else name
                for name in response.template_name
            ]
        return response

    def get_list_filter(self, request: HttpRequest) -> Any:
        filters = list(super().get_list_filter(request))
        if self._scope(request).everything:
            return filters
        scoped: list[Any] = []
        for item in filters:
            if isinstance(item, str) and "__" not in item:
                try:
                    field = self.model._meta.get_field(item)
                except Exception:
                    scoped.append(item)
                    continue
                if field.is_relation:
                    scoped.append((item, RelatedOnlyFieldListFilter))
                    continue
            scoped.append(item)
        return scoped

    def _get_obj_does_not_exist_redirect(self, request: HttpRequest, opts: Any, object_id: str) -> HttpResponseRedirect:
        raise Http404("No such object in your scope.")

    def save_model(self, request: HttpRequest, obj: models.Model, form: Any, change: bool) -> None:
        needs_scope = self.scope_field or self.shared_read
        if needs_scope and not self._scope(request).everything and not self._writable(request, obj):
            raise PermissionDenied("That row belongs to a bank outside your scope.")
        before = None
        if change and obj.pk is not None:
            previous = type(obj)._default_manager.filter(pk=obj.pk).first()
            before = snapshot(previous) if previous is not None else None
        super().save_model(request, obj, form, change)
        audit_record(
            actor=request.user,
            action="admin.change" if change else "admin.add",
            obj=obj,
            before=before,
            after=snapshot(obj),
            object_banks=self._banks(obj),
        )

    def delete_model(self, request: HttpRequest, obj: models.Model) -> None:
        before = snapshot(obj)
        banks = self._banks(obj)
        object_id = str(obj.pk)
        super().delete_model(request, obj)
        audit_record(
            actor=request.user,
            action="admin.delete",
            obj=None,
            before=before,
            object_banks=banks,
            object_type=obj._meta.label_lower,
            object_id=object_id,
        )

    def delete_queryset(self, request: HttpRequest, queryset: models.QuerySet[Any]) -> None:
        for obj in queryset:
            self.delete_model(request, obj)

    def _banks(self, obj: models.Model) -> set[int]:
        """The banks the row belongs to; the audit row takes the one of them the acting operator works for."""
        return bank_ids_of(obj, self.scope_field) if self.scope_field else set()

    def history_view(self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None) -> Any:
        """The object's admin history, as a bank operator may see it: only the entries made by people who work for or
        audit one of the operator's banks, and by alliance operators, who are shown as "alliance operator" without
        their name. Django builds the page; the entries are filtered and paginated again before it renders."""
        response = super().history_view(request, object_id, extra_context)
        scope = self._scope(request)
        context = getattr(response, "context_data", None)
        if scope.everything or not isinstance(response, TemplateResponse) or context is None:
            return response
        entries = context["action_list"].paginator.object_list
        colleagues: set[int] = set()
        alliance: set[int] = set()
        for author in get_user_model().objects.filter(pk__in=entries.values("user_id")):
            author_scope = operator_scope(author)
            if author_scope.everything:
                alliance.add(author.pk)
            elif author_scope.bank_ids & scope.bank_ids:
                colleagues.add(author.pk)
        paginator = self.get_paginator(request, entries.filter(user_id__in=colleagues | alliance), HISTORY_PAGE_SIZE)
        page = paginator.get_page(request.GET.get(PAGE_VAR, 1))
        context.update(
            action_list=page,
            page_range=paginator.get_elided_page_range(page.number),
            pagination_required=paginator.count > HISTORY_PAGE_SIZE,
            alliance_authors=alliance,
        )
        return response


class ScopedTabularInline(MoneyColumnsMixin, ScopeMixin, admin.TabularInline):  # type: ignore[type-arg]
    pass


class ScopedStackedInline(MoneyColumnsMixin, ScopeMixin, admin.StackedInline):  # type: ignore[type-arg]
    pass


class PartitionedAdmin(ScopedAdmin):
    """The admin of a table partitioned by month: its list says, above its rows, where it stops once its older months
    were archived (`archived_note`, naming `%(month)s`, the first month still listed), with a link to the archived
    months of the table for those who may see them, where a row of them is found by its id. One query; and when a
    search finds no live row, one probe of each archive for it, to say which archived month holds it."""

    archived_table: ClassVar[str]
    archived_note: ClassVar[Promise]
    change_list_template = "admin/archived_change_list.html"

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        before = archived_before(self.archived_table)
        note = str(self.archived_note) % {"month": f"{before:%Y-%m}"} if before else ""
        context = {**(extra_context or {}), "archived_note": note, "archived_table": self.archived_table}
        response = super().changelist_view(request, context)
        changelist = getattr(response, "context_data", {}).get("cl")
        term = request.GET.get(SEARCH_VAR, "").strip()
        if before and term and changelist is not None and changelist.result_count == 0 and self._sees_archives(request):
            # A search that finds nothing live may name a row of an archived month: say which, with its lookup.
            response.context_data["archived_hits"] = [
                (record.month, reverse("admin:core_archivedmonth_rows", args=[record.pk]))
                for record in archived_months_holding(self.archived_table, term)
            ]
            response.context_data["archived_term"] = term
        return response

    def _sees_archives(self, request: HttpRequest) -> bool:
        return self._scope(request).everything and request.user.has_perm("core.view_archivedmonth")


class ReadOnlyAdminMixin:
    """For ledgers and logs: visible, never added, changed or deleted through the admin."""

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False


def lift_signin_lockouts(model_admin: admin.ModelAdmin, request: HttpRequest, users: list[Any]) -> None:  # type: ignore[type-arg]
    """The admin action behind "lift the sign-in lockout" (on users, and on cardholders for their bank's support desk):
    each username's lockout and failure count cleared, audited with the operator as the actor."""
    lifted = [user.get_username() for user in users if signin_unlock(user, actor=request.user)]
    if lifted:
        model_admin.message_user(
            request, _("Sign-in lockout lifted for: %(users)s") % {"users": ", ".join(lifted)}, messages.SUCCESS
        )
    else:
        model_admin.message_user(request, _("None of them was locked out."), messages.INFO)


def action_reason(
    model_admin: admin.ModelAdmin,  # type: ignore[type-arg]
    request: HttpRequest,
    queryset: models.QuerySet[Any],
    *,
    title: str,
) -> str | TemplateResponse:
    """For an admin action whose rows go to the approval queue: the maker's reason, asked on a page of its own that
    lists the selected rows (plain HTML, no script). Returns the page until a reason is given, then the reason; the
    action sends its requests with it."""
    reason = request.POST.get("reason", "").strip() if request.POST.get("post") == "yes" else ""
    if reason:
        return reason[:500]
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "opts": model_admin.model._meta,
        "queryset": queryset,
        "action": request.POST.get("action", ""),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "error": _("Give a reason for the request.") if request.POST.get("post") == "yes" else "",
        "reason": "",
    }
    return TemplateResponse(request, "admin/action_reason.html", context)


def approval_request_page(
    model_admin: admin.ModelAdmin,  # type: ignore[type-arg]
    request: HttpRequest,
    form: Any,
    ask: Callable[[dict[str, Any]], models.Model],
    *,
    title: str | Promise,
    template: str,
    done: str | Promise,
    **context: Any,
) -> HttpResponse:
    """A page whose form asks for an approval request. On a valid POST, `ask(cleaned_data)` makes the request through
    the feature's service: a refusal shows on the form (on the field it names, if the form has it), a request made is
    announced with `done` and its page in the approval queue opens."""
    if request.method == "POST" and form.is_valid():
        try:
            made = ask(form.cleaned_data)
        except MengkaError as exc:
            form.add_error(exc.param if exc.param in form.fields else None, exc.message)
        else:
            messages.success(request, str(done))
            return HttpResponseRedirect(reverse("admin:core_approvalrequest_change", args=[made.pk]))
    page = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "form": form,
        "opts": model_admin.model._meta,
        **context,
    }
    return TemplateResponse(request, template, page)
