"""Merchant API routes owned by the alliance (under /api/v1/): segment aggregates."""

from django.urls import URLPattern, URLResolver, path

from . import apis

urlpatterns: list[URLPattern | URLResolver] = [
    path("segments/stats", apis.SegmentStatsApi.as_view(), name="api-segment-stats"),
]
