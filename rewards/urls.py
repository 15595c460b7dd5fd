from django.urls import URLPattern, URLResolver

app_name = "rewards"
urlpatterns: list[URLPattern | URLResolver] = []
