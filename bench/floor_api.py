"""The API benchmark's floor: an API-key-authenticated DRF POST that inserts one row, served beside the real API."""

from __future__ import annotations

from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response

from core.models import JobRun
from merchants.api_base import MerchantAPIView
from settings.urls import urlpatterns as project_urls


class FloorApi(MerchantAPIView):
    def post(self, request: Request) -> Response:
        row = JobRun.objects.create(
            job="bench.floor", period=str(request.data.get("note", ""))[:64], status="succeeded"
        )
        return Response({"id": row.pk}, status=201)


urlpatterns = [*project_urls, path("bench/floor", FloorApi.as_view())]
