from django.contrib import admin
from django.urls import include, path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from oneflow import health
from oneflow.lib.converters import IdConverter

# Registered before the apps' URLs below are included: they use <id:...>.
register_converter(IdConverter, "id")

handler404 = "oneflow.lib.errors.not_found_view"
handler500 = "oneflow.lib.errors.server_error_view"

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("api/", include("accounts.urls")),
    path("api/", include("billing.urls")),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    # The customer dashboard (HTML, session auth): /signup, /signin, /dashboard/...
    path("", include("accounts.urls_dashboard")),
    path("", include("billing.urls_dashboard")),
    path("", include("routing.urls_dashboard")),
    # /metrics is served outside Django, by oneflow.lib.metrics.
]
