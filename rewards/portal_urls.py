"""The cardholder portal's points pages, under /portal/points/."""

from django.urls import path

from . import views

app_name = "rewards_portal"
urlpatterns = [
    path("", views.points, name="points"),
    path("<int:program_id>/", views.points_statement, name="statement"),
]
