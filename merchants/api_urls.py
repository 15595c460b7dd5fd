"""Merchant API routes owned by merchants (under /api/v1/)."""

from django.urls import URLPattern, URLResolver, path

from . import apis

urlpatterns: list[URLPattern | URLResolver] = [
    path("stores", apis.StoreListCreateApi.as_view(), name="api-stores"),
    path("webhook-endpoints", apis.WebhookEndpointListCreateApi.as_view(), name="api-webhook-endpoints"),
    path("webhook-endpoints/<str:endpoint_id>", apis.WebhookEndpointDetailApi.as_view(), name="api-webhook-endpoint"),
    path("events", apis.EventListApi.as_view(), name="api-events"),
    path("events/<str:event_id>", apis.EventDetailApi.as_view(), name="api-event"),
]
