from django.urls import URLPattern, URLResolver

app_name = "alliance"
urlpatterns: list[URLPattern | URLResolver] = []
