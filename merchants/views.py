"""Merchants: public pages (the application form)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from core.errors import MengkaError

from . import selectors, services
from .forms import MerchantApplicationForm


@require_http_methods(["GET", "POST"])
def apply(request: HttpRequest) -> HttpResponse:
    form = MerchantApplicationForm(request.POST or None, banks=selectors.acquiring_banks())
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                application = services.merchant_application_submit(**form.cleaned_data)
            except MengkaError as exc:
                if exc.param and exc.param in form.fields:
                    form.add_error(exc.param, exc.message)
                else:
                    form.add_error(None, exc.message)
                status = exc.http_status
            else:
                return render(request, "merchants/apply_done.html", {"application": application}, status=201)
        else:
            status = 422
    return render(request, "merchants/apply.html", {"form": form}, status=status)
