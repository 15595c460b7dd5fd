from django.urls import URLPattern, URLResolver, path

from . import views

app_name = "merchants"
urlpatterns: list[URLPattern | URLResolver] = [
    path("apply", views.apply, name="apply"),
    path("keys/<str:token>", views.key_collect, name="key"),
]
