"""The cardholder portal's points, benefit and offer pages, under /portal/points/."""

from django.urls import path

from . import views

app_name = "rewards_portal"
urlpatterns = [
    path("", views.points, name="points"),
    path("<int:program_id>/", views.points_statement, name="statement"),
    path("exchange/", views.points_exchange, name="exchange"),
    path("exchange/quote/", views.points_exchange_quote, name="exchange_quote"),
    path("benefits/", views.benefits, name="benefits"),
    path("benefits/<int:benefit_id>/", views.benefit_detail, name="benefit"),
    path("benefits/<int:benefit_id>/quote/", views.benefit_quote, name="benefit_quote"),
    path("offers/", views.offers, name="offers"),
    path("vouchers/", views.vouchers, name="vouchers"),
    path("vouchers/<int:voucher_id>/cancel/", views.voucher_cancel, name="voucher_cancel"),
]
