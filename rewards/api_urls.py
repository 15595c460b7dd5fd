"""Merchant API routes owned by rewards (under /api/v1/): vouchers, promotions (their stats are payments')."""

from django.urls import URLPattern, URLResolver, path

from . import apis

urlpatterns: list[URLPattern | URLResolver] = [
    path("vouchers/<str:code>", apis.VoucherDetailApi.as_view(), name="api-voucher"),
    path("vouchers/<str:code>/redeem", apis.VoucherRedeemApi.as_view(), name="api-voucher-redeem"),
    path("promotions", apis.PromotionListCreateApi.as_view(), name="api-promotions"),
    path("promotions/<str:promotion_id>", apis.PromotionDetailApi.as_view(), name="api-promotion"),
    path("promotions/<str:promotion_id>/pause", apis.PromotionPauseApi.as_view(), name="api-promotion-pause"),
    path("promotions/<str:promotion_id>/resume", apis.PromotionResumeApi.as_view(), name="api-promotion-resume"),
    path("promotions/<str:promotion_id>/end", apis.PromotionEndApi.as_view(), name="api-promotion-end"),
]
