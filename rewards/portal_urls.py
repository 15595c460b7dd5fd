"""The cardholder portal's points pages, under /portal/points/."""

from django.urls import path

from . import views

app_name = "rewards_portal"
urlpatterns = [
    path("", views.points, name="points"),
    path("<int:program_id>/", views.points_statement, name="statement"),
    path("exchange/", views.points_exchange, name="exchange"),
    path("exchange/quote/", views.points_exchange_quote, name="exchange_quote"),
]
