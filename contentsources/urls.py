from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from contentsources import health
from contentsources.api import errors
from repositories import serving
from tasks.metrics import metrics_view

API = "api/content-sources/"

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path(f"{API}v1/", include("contentsources.api.urls")),
    path(f"{API}v1.0/", include("contentsources.api.urls")),
    path(f"{settings.CONTENT_URL_PREFIX}<str:org_id>/<uuid:snapshot_uuid>/<path:path>", serving.serve, name="content"),
]

handler400 = errors.bad_request
handler403 = errors.permission_denied
handler404 = errors.not_found
handler500 = errors.server_error
