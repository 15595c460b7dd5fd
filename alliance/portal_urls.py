"""The cardholder portal's alliance pages, under /portal/alliance/."""

from django.urls import path

from . import views

app_name = "alliance_portal"
urlpatterns = [
    path("best-card/", views.best_card, name="best_card"),
    path("segments/", views.segments, name="segments"),
]
