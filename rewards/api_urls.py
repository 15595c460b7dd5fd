"""Merchant API routes owned by rewards (under /api/v1/): vouchers."""

from django.urls import URLPattern, URLResolver, path

from . import apis

urlpatterns: list[URLPattern | URLResolver] = [
    path("vouchers/<str:code>", apis.VoucherDetailApi.as_view(), name="api-voucher"),
    path("vouchers/<str:code>/redeem", apis.VoucherRedeemApi.as_view(), name="api-voucher-redeem"),
]
