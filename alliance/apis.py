"""Merchant API owned by the alliance: aggregates per cardholder segment, never about anyone in particular.

A merchant sees, per segment tag, how many of its paying customers carry it and what they spent, only for cohorts of
at least `min_cohort` cardholders who consent to personalised offers. See docs/segments.md.
"""

from __future__ import annotations

from django.utils.decorators import method_decorator
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from core.api.fields import StrictSerializer
from core.replicas import replica_view
from merchants.api_base import LIVEMODE_HELP, MerchantAPIView

from . import selectors

MAX_DAYS = 366


class SegmentStatsQuery(StrictSerializer):
    days = serializers.IntegerField(
        required=False, default=90, min_value=1, max_value=MAX_DAYS, help_text="The window: the last N days (1-366)."
    )
    currency = serializers.RegexField(r"^[A-Z]{3}\Z", required=False, default="CNY")


class SegmentCohortOut(serializers.Serializer):
    tag = serializers.CharField(help_text="The segment tag, as promotions' segment_tags name it.")
    # Declared fields, taken off the class by DRF's metaclass: they do not shadow `Field.label` or `Serializer.data`.
    label = serializers.CharField(  # type: ignore[assignment]
        allow_null=True, help_text="The segment rule's name; null for a tag no rule defines."
    )
    suppressed = serializers.BooleanField(
        help_text="Fewer than min_cohort customers carry the tag: its figures are withheld. A tag no rule defines is "
        "then not listed at all."
    )
    customers = serializers.IntegerField(
        allow_null=True, help_text="Distinct paying customers carrying the tag; null when suppressed."
    )
    spend = serializers.IntegerField(
        allow_null=True, help_text="Their captured payments less refunds, minor units; null when suppressed."
    )


class SegmentStatsOut(serializers.Serializer):
    object = serializers.CharField(default="segment.stats")
    livemode = serializers.BooleanField(help_text=LIVEMODE_HELP)
    currency = serializers.CharField()
    days = serializers.IntegerField()
    since = serializers.IntegerField(help_text="Unix seconds: the window's start.")
    until = serializers.IntegerField(help_text="Unix seconds: the window's end (now), exclusive.")
    min_cohort = serializers.IntegerField(help_text="The smallest group whose figures are shown.")
    data = SegmentCohortOut(many=True)  # type: ignore[assignment]


@method_decorator(replica_view, name="get")
class SegmentStatsApi(MerchantAPIView):
    @extend_schema(
        operation_id="segments_stats",
        summary="Your customers per segment",
        description="Per segment tag, your distinct paying customers who carry it (counting only cardholders who "
        "consent to personalised offers) and their spend in the window, in your key's mode. Cohorts under "
        "min_cohort are withheld, so no one can be singled out.",
        parameters=[SegmentStatsQuery],
        responses={200: SegmentStatsOut},
        tags=["segments"],
    )
    def get(self, request: Request) -> Response:
        query = self.query(SegmentStatsQuery)
        return Response(
            selectors.segment_stats(
                merchant=self.merchant, livemode=self.livemode, currency=query["currency"], days=query["days"]
            )
        )
