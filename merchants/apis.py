"""Merchant API: stores, webhook endpoints, events. One thin view per operation."""

from __future__ import annotations

from typing import Any

from django.core.validators import URLValidator
from django.utils.decorators import method_decorator
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from core.api.fields import StrictBooleanField, StrictCharField, StrictSerializer, unix
from core.api.pagination import CreatedListQuery, ListQuery, created_range, list_response_serializer, page
from core.replicas import replica_view
from core.text import id_or_none

from . import selectors, services
from .api_base import LIVEMODE_HELP, MerchantAPIView
from .models import Event, Store, WebhookEndpoint
from .services import EVENT_TYPES

# --- stores ---------------------------------------------------------------------------------------------------------


class StoreOut(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(default="store")
    code = serializers.CharField()
    name = serializers.CharField()
    city = serializers.CharField()
    livemode = serializers.BooleanField(help_text=LIVEMODE_HELP)
    created = serializers.IntegerField()


def store_out(store: Store) -> dict[str, Any]:
    return {
        "id": store.code,
        "object": "store",
        "code": store.code,
        "name": store.name,
        "city": store.city,
        "livemode": store.livemode,
        "created": unix(store.created_at),
    }


class StoreCreateIn(StrictSerializer):
    code = serializers.RegexField(r"^[A-Za-z0-9_-]{1,32}\Z", help_text="Your code for the store, unique to you.")
    name = StrictCharField(max_length=100)
    city = StrictCharField(max_length=64, required=False, default="")


StoreList = list_response_serializer("StoreList", StoreOut)


class StoreListCreateApi(MerchantAPIView):
    @extend_schema(operation_id="stores_list", parameters=[ListQuery], responses={200: StoreList}, tags=["stores"])
    def get(self, request: Request) -> Response:
        query = self.query(ListQuery)
        return Response(
            page(
                selectors.store_list(merchant=self.merchant, livemode=self.livemode),
                limit=query["limit"],
                starting_after=query.get("starting_after"),
                id_field="code",
                render=store_out,
            )
        )

    @extend_schema(
        operation_id="stores_create",
        request=StoreCreateIn,
        responses={201: StoreOut},
        tags=["stores"],
        examples=[OpenApiExample("A store", value={"code": "SH-001", "name": "Nanjing Road", "city": "Shanghai"})],
    )
    def post(self, request: Request) -> Response:
        data = self.body(StoreCreateIn)

        def run(key: str) -> tuple[int, dict[str, Any]]:
            store = services.store_create(merchant=self.merchant, livemode=self.livemode, actor=self.actor, **data)
            return 201, store_out(store)

        return self.idempotent("store.create", run)


# --- webhook endpoints ----------------------------------------------------------------------------------------------


class WebhookEndpointOut(serializers.Serializer):
    id = serializers.IntegerField()
    object = serializers.CharField(default="webhook_endpoint")
    url = serializers.URLField()
    event_types = serializers.ListField(child=serializers.CharField())
    enabled = serializers.BooleanField()
    description = serializers.CharField()
    livemode = serializers.BooleanField(help_text="Receives the events of this mode only.")
    created = serializers.IntegerField()


class WebhookEndpointCreatedOut(WebhookEndpointOut):
    secret = serializers.CharField(help_text="The signing secret, shown only in this response.")


def endpoint_out(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": endpoint.pk,
        "object": "webhook_endpoint",
        "url": endpoint.url,
        "event_types": endpoint.event_types,
        "enabled": endpoint.enabled,
        "description": endpoint.description,
        "livemode": endpoint.livemode,
        "created": unix(endpoint.created_at),
    }


HTTP_URL = URLValidator(schemes=["http", "https"])


class EventTypesField(serializers.ListField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(child=serializers.ChoiceField(choices=EVENT_TYPES), max_length=len(EVENT_TYPES), **kwargs)


class WebhookEndpointCreateIn(StrictSerializer):
    url = serializers.URLField(max_length=500, validators=[HTTP_URL])
    event_types = EventTypesField(required=False, default=list, help_text="Empty: every event type.")
    description = StrictCharField(max_length=200, required=False, default="", allow_blank=True)


class WebhookEndpointUpdateIn(StrictSerializer):
    url = serializers.URLField(max_length=500, required=False, validators=[HTTP_URL])
    event_types = EventTypesField(required=False)
    enabled = StrictBooleanField(required=False)
    description = StrictCharField(max_length=200, required=False, allow_blank=True)


WebhookEndpointList = list_response_serializer("WebhookEndpointList", WebhookEndpointOut)


def _int_id(raw: str) -> int:
    from core.errors import NotFound

    found = id_or_none(raw)
    if found is None:
        raise NotFound("No such webhook endpoint.", param="id")
    return found


class WebhookEndpointListCreateApi(MerchantAPIView):
    @extend_schema(
        operation_id="webhook_endpoints_list",
        parameters=[ListQuery],
        responses={200: WebhookEndpointList},
        tags=["webhooks"],
    )
    def get(self, request: Request) -> Response:
        query = self.query(ListQuery)
        endpoints = selectors.webhook_endpoint_list(merchant=self.merchant, livemode=self.livemode)
        starting_after = query.get("starting_after")
        if starting_after is not None:
            _int_id(starting_after)
        return Response(
            page(endpoints, limit=query["limit"], starting_after=starting_after, id_field="pk", render=endpoint_out)
        )

    @extend_schema(
        operation_id="webhook_endpoints_create",
        request=WebhookEndpointCreateIn,
        responses={201: WebhookEndpointCreatedOut},
        tags=["webhooks"],
        examples=[
            OpenApiExample(
                "Payment events",
                value={
                    "url": "https://shop.example.com/hooks",
                    "event_types": ["payment.succeeded", "refund.succeeded"],
                },
            )
        ],
    )
    def post(self, request: Request) -> Response:
        data = self.body(WebhookEndpointCreateIn)

        def run(key: str) -> tuple[int, dict[str, Any]]:
            created = services.webhook_endpoint_create(
                merchant=self.merchant, livemode=self.livemode, actor=self.actor, **data
            )
            return 201, {**endpoint_out(created.endpoint), "secret": created.secret}

        # The signing secret is shown once: a keyed request's stored response keeps it encrypted.
        return self.idempotent("webhook_endpoint.create", run, secret_fields=("secret",))


class WebhookEndpointDetailApi(MerchantAPIView):
    def _endpoint(self, endpoint_id: str) -> WebhookEndpoint:
        return selectors.webhook_endpoint_get(
            merchant=self.merchant, livemode=self.livemode, endpoint_id=_int_id(endpoint_id)
        )

    @extend_schema(operation_id="webhook_endpoints_retrieve", responses={200: WebhookEndpointOut}, tags=["webhooks"])
    def get(self, request: Request, endpoint_id: str) -> Response:
        return Response(endpoint_out(self._endpoint(endpoint_id)))

    @extend_schema(
        operation_id="webhook_endpoints_update",
        request=WebhookEndpointUpdateIn,
        responses={200: WebhookEndpointOut},
        tags=["webhooks"],
    )
    def post(self, request: Request, endpoint_id: str) -> Response:
        endpoint = self._endpoint(endpoint_id)
        data = self.body(WebhookEndpointUpdateIn)

        def run(key: str) -> tuple[int, dict[str, Any]]:
            return 200, endpoint_out(services.webhook_endpoint_update(endpoint=endpoint, actor=self.actor, **data))

        return self.idempotent("webhook_endpoint.update", run)

    @extend_schema(operation_id="webhook_endpoints_delete", responses={200: WebhookEndpointOut}, tags=["webhooks"])
    def delete(self, request: Request, endpoint_id: str) -> Response:
        endpoint = self._endpoint(endpoint_id)
        body = {**endpoint_out(endpoint), "deleted": True}
        services.webhook_endpoint_delete(endpoint=endpoint, actor=self.actor)
        return Response(body)


# --- events ---------------------------------------------------------------------------------------------------------


class EventOut(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(default="event")
    type = serializers.CharField()
    livemode = serializers.BooleanField(help_text=LIVEMODE_HELP)
    created = serializers.IntegerField()
    data = serializers.DictField(  # type: ignore[assignment]  # the field is named like Serializer.data
        help_text='{"object": <the payment or refund as the API shows it>}'
    )


class EventListQuery(CreatedListQuery):
    type = serializers.ChoiceField(choices=EVENT_TYPES, required=False)


EventList = list_response_serializer("EventList", EventOut)


def event_out(event: Event) -> dict[str, Any]:
    return services.event_body(event)


@method_decorator(replica_view, name="get")
class EventListApi(MerchantAPIView):
    @extend_schema(operation_id="events_list", parameters=[EventListQuery], responses={200: EventList}, tags=["events"])
    def get(self, request: Request) -> Response:
        query = self.query(EventListQuery)
        events = selectors.event_list(merchant=self.merchant, livemode=self.livemode, type=query.get("type"))
        events = events.filter(**created_range(query))
        return Response(
            page(events, limit=query["limit"], starting_after=query.get("starting_after"), render=event_out)
        )


class EventDetailApi(MerchantAPIView):
    @extend_schema(
        operation_id="events_retrieve",
        parameters=[OpenApiParameter("event_id", str, OpenApiParameter.PATH)],
        responses={200: EventOut},
        tags=["events"],
    )
    def get(self, request: Request, event_id: str) -> Response:
        return Response(
            event_out(selectors.event_get(merchant=self.merchant, livemode=self.livemode, event_id=event_id))
        )
