"""Merchant API routes owned by payments (under /api/v1/)."""

from django.urls import URLPattern, URLResolver, path

from . import apis

urlpatterns: list[URLPattern | URLResolver] = [
    path("payments", apis.PaymentListCreateApi.as_view(), name="api-payments"),
    path("payments/quote", apis.PaymentQuoteApi.as_view(), name="api-payment-quote"),
    path("payments/<str:payment_id>", apis.PaymentDetailApi.as_view(), name="api-payment"),
    path("payments/<str:payment_id>/confirm", apis.PaymentConfirmApi.as_view(), name="api-payment-confirm"),
    path("payments/<str:payment_id>/capture", apis.PaymentCaptureApi.as_view(), name="api-payment-capture"),
    path("payments/<str:payment_id>/cancel", apis.PaymentCancelApi.as_view(), name="api-payment-cancel"),
    path("refunds", apis.RefundListCreateApi.as_view(), name="api-refunds"),
    path("refunds/<str:refund_id>", apis.RefundDetailApi.as_view(), name="api-refund"),
    path("agreement-requests", apis.AgreementRequestCreateApi.as_view(), name="api-agreement-requests"),
    path(
        "agreement-requests/<str:request_id>",
        apis.AgreementRequestDetailApi.as_view(),
        name="api-agreement-request",
    ),
    path("agreements/<str:agreement_id>", apis.AgreementDetailApi.as_view(), name="api-agreement"),
    path("promotions/<str:promotion_id>/stats", apis.PromotionStatsApi.as_view(), name="api-promotion-stats"),
    path("settlements", apis.SettlementListApi.as_view(), name="api-settlements"),
    path("settlements/<str:settlement_id>", apis.SettlementDetailApi.as_view(), name="api-settlement"),
    path("settlements/<str:settlement_id>/lines", apis.SettlementLinesApi.as_view(), name="api-settlement-lines"),
    path(
        "settlements/<str:settlement_id>/lines.csv",
        apis.SettlementLinesCsvApi.as_view(),
        name="api-settlement-lines-csv",
    ),
    path("disputes", apis.DisputeListApi.as_view(), name="api-disputes"),
    path("disputes/<str:dispute_id>", apis.DisputeDetailApi.as_view(), name="api-dispute"),
    path("disputes/<str:dispute_id>/evidence", apis.DisputeEvidenceApi.as_view(), name="api-dispute-evidence"),
    path("disputes/<str:dispute_id>/accept", apis.DisputeAcceptApi.as_view(), name="api-dispute-accept"),
    path("reports/summary", apis.ReportSummaryApi.as_view(), name="api-report-summary"),
]
