"""Merchant API: verifying and redeeming a cardholder's voucher at the till. One thin view per operation.

Vouchers are live objects: a test key sees none (404), as a voucher of another merchant is 404 to every other.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from core.api.fields import StrictSerializer
from core.errors import NotFound
from merchants.api_base import MerchantAPIView
from merchants.models import Merchant

from . import services
from .models import Voucher

CODE = OpenApiParameter(
    "code", str, OpenApiParameter.PATH, description="The voucher's code as the cardholder shows it (dashes allowed)."
)


class VoucherBenefitOut(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    title_zh = serializers.CharField()
    title_en = serializers.CharField()
    terms_zh = serializers.CharField()
    terms_en = serializers.CharField()


class VoucherOut(serializers.Serializer):
    id = serializers.CharField()
    object = serializers.CharField(default="voucher")
    code_hint = serializers.CharField(help_text="The code's last four characters.")
    state = serializers.ChoiceField(choices=Voucher.State.values)
    benefit = VoucherBenefitOut()
    stores = serializers.ListField(
        child=serializers.CharField(), help_text="Your store codes where it is redeemed; empty: any of your stores."
    )
    redeemed_store = serializers.CharField(allow_null=True)
    livemode = serializers.BooleanField(help_text="Always true: vouchers are live objects.")
    issued = serializers.IntegerField()
    valid_until = serializers.IntegerField()
    redeemed = serializers.IntegerField(allow_null=True)


class VoucherRedeemIn(StrictSerializer):
    store = serializers.RegexField(
        r"^[A-Za-z0-9_-]{1,32}\Z", required=False, help_text="The store redeeming it (required when the voucher lists)."
    )


def _live(view: MerchantAPIView) -> Merchant:
    if not view.livemode:
        raise NotFound("No such voucher.", param="code")
    return view.merchant


class VoucherDetailApi(MerchantAPIView):
    @extend_schema(operation_id="vouchers_retrieve", parameters=[CODE], responses={200: VoucherOut}, tags=["vouchers"])
    def get(self, request: Request, code: str) -> Response:
        merchant = _live(self)
        return Response(services.voucher_out(services.voucher_for_merchant(merchant=merchant, code=code)))


class VoucherRedeemApi(MerchantAPIView):
    @extend_schema(
        operation_id="vouchers_redeem",
        parameters=[CODE],
        request=VoucherRedeemIn,
        responses={200: VoucherOut},
        tags=["vouchers"],
        examples=[OpenApiExample("At a store", value={"store": "SH-001"})],
    )
    def post(self, request: Request, code: str) -> Response:
        merchant = _live(self)
        store = self.body(VoucherRedeemIn).get("store")

        def run(key: str) -> tuple[int, dict[str, Any]]:
            voucher = services.voucher_redeem(merchant=merchant, code=code, store_code=store, actor=self.actor)
            return 200, services.voucher_out(voucher)

        return self.idempotent("voucher.redeem", run)
