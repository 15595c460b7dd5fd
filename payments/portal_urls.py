"""The cardholder portal's payment pages, under /portal/pay/."""

from django.urls import path

from . import views

app_name = "payments"
urlpatterns = [
    path("statement/", views.statement, name="statement"),
    path("statement/export.csv", views.statement_csv, name="statement_csv"),
    path("statement/<str:payment_id>/", views.statement_payment, name="statement_payment"),
    path("code/", views.pay_code, name="pay_code"),
    path("agreements/", views.agreements, name="agreements"),
    path("agreements/grant/<str:request_id>/", views.agreement_grant, name="agreement_grant"),
    path("agreements/<str:agreement_id>/revoke/", views.agreement_revoke, name="agreement_revoke"),
    path("balances/", views.balances, name="balances"),
    path("spending/", views.spending_overview, name="spending"),
]
