from django.conf import settings
from django.contrib import admin
from django.urls import path

from repositories import serving

urlpatterns = [
    path("admin/", admin.site.urls),
    path(f"{settings.CONTENT_URL_PREFIX}<str:org_id>/<uuid:snapshot_uuid>/<path:path>", serving.serve, name="content"),
]
