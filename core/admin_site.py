"""The operators' admin site: Django's, with the sign-in lockout the portal has (see `core.signin`)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import NON_FIELD_ERRORS
from django.http import HttpRequest, HttpResponse

from .forms import LOCKED_OUT, OperatorSignInForm


class OperatorAdminSite(admin.AdminSite):
    login_form = OperatorSignInForm

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        response = super().login(request, extra_context)
        form = (getattr(response, "context_data", None) or {}).get("form")
        if form is not None and form.has_error(NON_FIELD_ERRORS, LOCKED_OUT):
            response.status_code = 429
        return response
