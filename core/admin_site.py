"""The operators' admin site: Django's, with the sign-in lockout the portal has (see `core.signin`) and the dashboard
as its index (`core.console`)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import NON_FIELD_ERRORS
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.decorators import method_decorator

from .console import approvals_waiting, bank_choices, dashboard_sections, dashboard_view
from .forms import LOCKED_OUT, OperatorSignInForm
from .replicas import replica_view


class OperatorAdminSite(admin.AdminSite):
    login_form = OperatorSignInForm
    index_template = "admin/console_index.html"

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        response = super().login(request, extra_context)
        form = (getattr(response, "context_data", None) or {}).get("form")
        if form is not None and form.has_error(NON_FIELD_ERRORS, LOCKED_OUT):
            response.status_code = 429
        return response

    @method_decorator(replica_view)
    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        view = dashboard_view(request, self)
        sections = dashboard_sections(view)
        context = {
            "console_sections": sections,
            "console_charts": [section.chart for section in sections if section.chart is not None],
            "console_approvals": approvals_waiting(view),
            "console_banks": bank_choices(view) if view.scope.everything or len(view.scope.bank_ids) > 1 else [],
            "console_bank": view.bank_id,
            "console_today": view.today,
            **(extra_context or {}),
        }
        return super().index(request, context)
