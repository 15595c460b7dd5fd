"""The alliance's cardholder portal pages, under /portal/alliance/."""

from django.urls import path

from . import views

app_name = "alliance_portal"
urlpatterns = [
    path("segments/", views.segments, name="segments"),
]
