"""The REST API, under /api/content-sources/v1/ (and v1.0, as the original serves both)."""

from django.urls import include, path
from drf_spectacular.views import SpectacularJSONAPIView
from rest_framework.permissions import AllowAny
from rest_framework.routers import SimpleRouter

from contentsources.api import schema  # noqa: F401  (registers the identity scheme with the schema)
from contentsources.api.repositories import RepositoryViewSet
from contentsources.api.tasks import TaskViewSet

router = SimpleRouter()
router.register("repositories", RepositoryViewSet, basename="repository")
router.register("tasks", TaskViewSet, basename="task")

# The schema needs no identity, as in the original.
openapi = SpectacularJSONAPIView.as_view(authentication_classes=[], permission_classes=[AllowAny])

urlpatterns = [
    path("openapi.json", openapi, name="openapi"),
    path("", include(router.urls)),
]
