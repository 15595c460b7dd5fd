from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .health import health


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "core/home.html")


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 while the platform can serve — with Redis down too, on its fallbacks ("degraded"), so a load balancer keeps
    every web process — and 503 when the database does not answer."""
    report = health()
    return JsonResponse(report, status=503 if report["status"] == "down" else 200)
