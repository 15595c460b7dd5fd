"""URL root."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from core import views as core_views
from core.api.views import api_not_found
from members import views as members_views

urlpatterns = [
    path("", core_views.home, name="home"),
    path("healthz", core_views.healthz, name="healthz"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("accounts/login/", members_views.sign_in, name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("portal/pay/", include("payments.portal_urls", namespace="payments")),
    path("portal/points/", include("rewards.portal_urls", namespace="rewards_portal")),
    path("portal/alliance/", include("alliance.portal_urls", namespace="alliance_portal")),
    path("portal/", include("members.urls", namespace="members")),
    path("merchants/", include("merchants.urls", namespace="merchants")),
    path("admin/", admin.site.urls),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("api/v1/", include("payments.api_urls")),
    path("api/v1/", include("merchants.api_urls")),
    path("api/v1/", include("rewards.api_urls")),
    path("api/v1/", include("alliance.api_urls")),
    re_path(r"^api/", api_not_found),
]

handler400 = "core.api.views.bad_request"
handler403 = "core.api.views.permission_denied"
handler404 = "core.api.views.page_not_found"
handler500 = "core.api.views.server_error"
