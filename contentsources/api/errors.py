"""Every 4xx and 5xx of the API answers `{"errors": [{"status", "title", "detail"}]}`, as the
original's do: DRF's errors, the domain's and the framework's, in one place. Outside /api/
(the admin, the content), Django's own error pages answer."""

import logging
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from drf_spectacular.utils import inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from repositories.exceptions import ConfigurationNotFound, InvalidInput, RepositoryError, SnapshotsNotEnabled
from tasks.exceptions import TaskAlreadyQueued, TaskBusy, TaskError, TaskNotCancellable, TaskNotFound

logger = logging.getLogger(__name__)


class ErrorSerializer(serializers.Serializer[dict[str, Any]]):
    """One error of the envelope (for the schema: errors are built by `errors`)."""

    status = serializers.IntegerField()
    title = serializers.CharField()
    detail = serializers.CharField()


# The body of every 4xx and 5xx (its one field would hide Serializer.errors in a class).
ErrorsSerializer = inline_serializer("Errors", {"errors": ErrorSerializer(many=True)})


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "conflict"


class Busy(Conflict):
    """Another transaction holds what the request changes, for longer than the framework
    waits: nothing was changed; DRF sends `wait` as Retry-After."""

    wait = 1


class TooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "the request body is too large"


def errors(status_code: int, *details: str) -> dict[str, list[dict[str, Any]]]:
    title = HTTPStatus(status_code).phrase
    return {"errors": [{"status": status_code, "title": title, "detail": detail} for detail in details]}


def handle_exception(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's EXCEPTION_HANDLER: the domain's errors as HTTP errors, every error enveloped."""
    exc = _as_api_exception(exc)
    response = exception_handler(exc, context)
    if response is None:  # not an error DRF knows: a bug
        logger.exception("unexpected error answering %s", context["request"].path, exc_info=exc)
        return Response(errors(500, "an unexpected error occurred; it has been logged"), status=500)
    response.data = errors(response.status_code, *_details(response.data))
    return response


def _as_api_exception(exc: Exception) -> Exception:
    if isinstance(exc, InvalidInput):
        return exceptions.ValidationError({exc.field: [str(exc)]})
    if isinstance(exc, ConfigurationNotFound | TaskNotFound):
        return exceptions.NotFound(str(exc))
    if isinstance(exc, SnapshotsNotEnabled | TaskNotCancellable):
        return exceptions.ValidationError(str(exc))
    if isinstance(exc, TaskAlreadyQueued):
        return Conflict(f"task {exc.task_id} is already pending or running")
    if isinstance(exc, TaskBusy):
        return Busy(f"{exc}; nothing was changed, try again")
    if isinstance(exc, TaskError | RepositoryError):
        return exceptions.ValidationError(str(exc))
    if isinstance(exc, Http404):
        return exceptions.NotFound(str(exc) or "not found")
    if isinstance(exc, RequestDataTooBig):
        return TooLarge(f"the request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes")
    if isinstance(exc, SuspiciousOperation):
        return exceptions.ParseError("the request cannot be served as sent")
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(str(exc))
    return exc


def _details(data: Any, field: str | None = None) -> list[str]:
    """DRF's error data (a detail, a list, or errors by field) as one line each."""
    if isinstance(data, dict):
        if set(data) == {"detail"}:
            return _details(data["detail"], field)
        return [line for key, value in data.items() for line in _details(value, _field(field, key))]
    if isinstance(data, list):
        return [line for value in data for line in _details(value, field)]
    text = str(data)
    return [f"{field}: {text}" if field and field != "non_field_errors" else text]


def _field(parent: str | None, key: object) -> str:
    return f"{parent}.{key}" if parent else str(key)


def _is_api(request: HttpRequest) -> bool:
    """Whether the request is the API's: the admin and the rest answer Django's HTML pages."""
    return request.path_info.startswith("/api/")


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler400 of the URLconf: a request Django refuses before any view (a Host header not
    in ALLOWED_HOSTS, a body over DATA_UPLOAD_MAX_MEMORY_SIZE)."""
    if not _is_api(request):
        return defaults.bad_request(request, exception)
    return JsonResponse(errors(400, "the request cannot be served as sent"), status=400)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler403 of the URLconf: refused outside DRF's views."""
    if not _is_api(request):
        return defaults.permission_denied(request, exception)
    return JsonResponse(errors(403, "forbidden"), status=403)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler404 of the URLconf: no route at all."""
    if not _is_api(request):
        return defaults.page_not_found(request, exception)
    return JsonResponse(errors(404, f"no such endpoint: {request.path}"), status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500 of the URLconf: an error outside DRF's views (a middleware's)."""
    if not _is_api(request):
        return defaults.server_error(request)
    return JsonResponse(errors(500, "an unexpected error occurred; it has been logged"), status=500)
