"""Merchants: public pages (the application form, and the one-time page that hands a merchant its new API key)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers
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


@require_http_methods(["GET", "POST"])
def key_collect(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows whether the link still works and a button; only the POST reveals the key (a link preview that fetches
    the page uses nothing up), once: the stored key is wiped as it is shown."""
    context: dict[str, object] = {}
    status = 200
    try:
        if request.method == "POST":
            context["collected"] = services.key_delivery_collect(token=token)
        else:
            context["delivery"] = services.key_delivery_check(token=token)
    except MengkaError as exc:
        context["error"] = exc.message
        status = 410 if exc.http_status == 409 else exc.http_status
    response = render(request, "merchants/key_collect.html", context, status=status)
    add_never_cache_headers(response)
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex"
    return response
