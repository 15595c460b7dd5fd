"""Lists: the list query (limit, cursor, created range), cursor pagination newest first, and the list envelope."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from django.db.models import Model, QuerySet
from rest_framework import serializers

from core.errors import NotFound

from .fields import StrictSerializer

LATEST_TIMESTAMP = 4_102_444_800  # 2100-01-01


class ListQuery(StrictSerializer):
    limit = serializers.IntegerField(min_value=1, max_value=100, default=10)
    starting_after = serializers.CharField(max_length=64, required=False)


class CreatedListQuery(ListQuery):
    created_gte = serializers.IntegerField(min_value=0, max_value=LATEST_TIMESTAMP, required=False)
    created_lte = serializers.IntegerField(min_value=0, max_value=LATEST_TIMESTAMP, required=False)


def created_range(query: Mapping[str, Any]) -> dict[str, datetime]:
    """`created_gte` / `created_lte` (unix seconds) as ORM filters."""
    filters = {}
    for name, lookup in (("created_gte", "created_at__gte"), ("created_lte", "created_at__lte")):
        if query.get(name) is not None:
            filters[lookup] = datetime.fromtimestamp(query[name], tz=UTC)
    return filters


def page(
    queryset: QuerySet[Any],
    *,
    limit: int,
    starting_after: str | None,
    id_field: str = "public_id",
    render: Callable[[Any], dict[str, Any]],
) -> dict[str, Any]:
    """Newest first; `starting_after` is the last id of the previous page (in the same, already scoped queryset)."""
    queryset = queryset.order_by("-pk")
    if starting_after:
        anchor: Model | None = queryset.filter(**{id_field: starting_after}).first()
        if anchor is None:
            raise NotFound("starting_after is not an object in this list.", param="starting_after")
        queryset = queryset.filter(pk__lt=anchor.pk)
    rows = list(queryset[: limit + 1])
    return {"object": "list", "data": [render(row) for row in rows[:limit]], "has_more": len(rows) > limit}


def list_response_serializer(name: str, item: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """A `{"object": "list", "data": [...], "has_more": bool}` envelope for the schema."""
    return type(
        name,
        (serializers.Serializer,),
        {
            "object": serializers.CharField(default="list"),
            "data": item(many=True),
            "has_more": serializers.BooleanField(),
        },
    )
