"""`tasks/`: the caller's tasks (and the Red Hat and Community ones, which every organisation
sees), one task, and its cancellation."""

import datetime
import uuid
from typing import Any

from django.utils import timezone
from django.utils.functional import cached_property
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from contentsources.api import params
from contentsources.api.errors import Conflict
from contentsources.api.identity import COMMUNITY_ORG, RED_HAT_ORG, Caller, caller_of
from contentsources.api.pagination import Envelope
from contentsources.api.parsers import JSON
from contentsources.api.schema import ApiSchema
from repositories import selectors
from repositories.models import RepositoryConfiguration
from tasks import client, registry
from tasks.models import Task


def visible_orgs(caller: Caller) -> list[str]:
    """The organisations whose tasks a caller sees: its own first, then Red Hat's and Community's."""
    return [caller.org_id, RED_HAT_ORG, COMMUNITY_ORG]


class TaskSerializer(serializers.Serializer[Task]):
    """A task as the original's API shows it (`created_at` is when it was queued)."""

    uuid = serializers.UUIDField(source="id")
    status = serializers.ChoiceField(choices=Task.Status.values)
    created_at = serializers.DateTimeField(source="queued_at")
    ended_at = serializers.DateTimeField(source="finished_at", allow_null=True)
    error = serializers.CharField(allow_null=True)
    org_id = serializers.CharField(allow_null=True)
    type = serializers.CharField()
    object_type = serializers.CharField(allow_null=True)
    object_uuid = serializers.UUIDField(allow_null=True)
    object_name = serializers.CharField(allow_null=True)
    dependencies = serializers.ListField(child=serializers.UUIDField(), source="dependency_ids")
    dependents = serializers.ListField(child=serializers.UUIDField(), source="dependent_ids")

    @cached_property
    def zone(self) -> datetime.tzinfo:
        """The current time zone, looked up once a page: a thread-local's lookup per row was a
        third of the time to show a page of 100 (bench/api_tasks.py)."""
        return timezone.get_current_timezone()

    def to_representation(self, task: Any) -> dict[str, Any]:
        """A task row of `tasks_of` as the fields above show it, in one step: DRF's
        field-by-field way took a third of a page of 100 (bench/api_tasks.py). The tests check
        that both give the same."""
        zone = self.zone
        return {
            "uuid": str(task["id"]),
            "status": task["status"],
            "created_at": _datetime(task["queued_at"], zone),
            "ended_at": _datetime(task["finished_at"], zone),
            "error": task["error"],
            "org_id": task["org_id"],
            "type": task["type"],
            "object_type": task["object_type"],
            "object_uuid": _text(task["object_uuid"]),
            "object_name": task["object_name"],
            "dependencies": [str(id) for id in task["dependency_ids"]],
            "dependents": [str(id) for id in task["dependent_ids"]],
        }


# The columns TaskSerializer shows: a page reads these and nothing else (no payload).
TASK_COLUMNS = (
    "id",
    "status",
    "queued_at",
    "finished_at",
    "error",
    "org_id",
    "type",
    "object_type",
    "object_uuid",
    "object_name",
    "dependency_ids",
    "dependent_ids",
)


def tasks_of(caller: Caller, **filters: Any) -> Any:
    """The caller's tasks (selectors.task_list) as rows of TASK_COLUMNS."""
    return selectors.task_list(orgs=visible_orgs(caller), **filters).values(*TASK_COLUMNS)


def task_response(caller: Caller, task_id: uuid.UUID, *, status_code: int = status.HTTP_200_OK) -> Response:
    return Response(TaskSerializer(tasks_of(caller).get(pk=task_id)).data, status=status_code)


def _datetime(value: datetime.datetime | None, zone: datetime.tzinfo) -> str | None:
    """As DRF's DateTimeField shows it: ISO 8601 in the current time zone, UTC as Z."""
    if value is None:
        return None
    text = value.astimezone(zone).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _text(value: object) -> str | None:
    return None if value is None else str(value)


TASK_FILTERS = [
    OpenApiParameter(
        "status", OpenApiTypes.STR, description=f"statuses, comma-separated: some of {', '.join(Task.Status.values)}"
    ),
    OpenApiParameter("type", OpenApiTypes.STR, description="a task type"),
    OpenApiParameter("repository_uuid", OpenApiTypes.UUID, description="tasks of this repository"),
]


class TaskViewSet(viewsets.ViewSet):
    schema = ApiSchema()
    parser_classes = [JSON]
    lookup_field = "uuid"
    lookup_value_regex = "[^/]+"
    pagination_class = Envelope

    @extend_schema(operation_id="listTasks", parameters=TASK_FILTERS, responses=TaskSerializer(many=True))
    def list(self, request: Request) -> Response:
        caller = caller_of(request)
        statuses = _statuses(params.text(request, "status"))
        task_type = params.text(request, "type", limit=255)
        repository = request.query_params.get("repository_uuid")
        configuration = _configuration(caller, repository) if repository is not None else None
        tasks = tasks_of(
            caller, statuses=statuses, types=[task_type] if task_type else None, configuration=configuration
        )
        if repository is not None and configuration is None:  # another organisation's, or none: none of its tasks
            tasks = tasks.none()
        paginator = Envelope()
        page: Any = paginator.paginate_queryset(tasks, request, self)
        # Shown without `.data`, whose list and serializer point at each other and so kept the
        # page's rows for the garbage collector's next full collection (bench/api_tasks.py).
        return paginator.get_paginated_response(TaskSerializer(many=True).to_representation(page))

    @extend_schema(operation_id="getTask", responses=TaskSerializer)
    def retrieve(self, request: Request, uuid: str) -> Response:
        caller = caller_of(request)
        return task_response(caller, _visible_task(caller, uuid).id)

    @extend_schema(
        operation_id="cancelTask",
        request=None,
        responses={
            204: OpenApiResponse(description="canceled"),
            400: OpenApiResponse(
                description="a malformed UUID, a type that cannot be canceled, or a Red Hat or Community task"
            ),
            404: OpenApiResponse(description="no such task in the caller's organisation"),
            409: OpenApiResponse(
                description="already completed, canceled, or failed for good; or held by another"
                " transaction for longer than a cancel waits (Retry-After says when to try again)"
            ),
        },
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, uuid: str) -> Response:
        caller = caller_of(request)
        task = _visible_task(caller, uuid)
        if task.org_id in (RED_HAT_ORG, COMMUNITY_ORG):
            raise ValidationError("Red Hat and Community tasks cannot be canceled")
        handler = registry.find(task.type)
        if handler is None or not handler.cancellable:  # whatever its status: it never could be
            raise ValidationError(f"tasks of type {task.type!r} cannot be canceled")
        if task.status in (Task.Status.COMPLETED, Task.Status.CANCELED) or (
            task.status == Task.Status.FAILED and task.next_retry_time is None
        ):
            raise Conflict(f"task {task.id} is already {task.status}")
        previous = client.cancel(task.id)
        if previous in (Task.Status.COMPLETED, Task.Status.CANCELED):  # it ended meanwhile
            raise Conflict(f"task {task.id} is already {previous}")
        return Response(status=status.HTTP_204_NO_CONTENT)


def _visible_task(caller: Caller, task_id: str) -> Task:
    """A task the caller sees: a malformed UUID is a 400, another organisation's task a 404."""
    pk = params.uuid_value(task_id, "uuid")
    try:
        return Task.objects.only("id", "org_id", "status", "next_retry_time", "type").get(
            pk=pk, org_id__in=visible_orgs(caller)
        )
    except Task.DoesNotExist:
        raise NotFound(f"task {pk} not found") from None


def _statuses(text: str | None) -> list[str] | None:
    if not text:
        return None
    statuses = [part.strip() for part in text.split(",") if part.strip()]
    if not statuses:
        raise ValidationError({"status": [f"names no status: {text[:40]!r}"]})
    unknown = [value for value in statuses if value not in Task.Status.values]
    if unknown:
        known = ", ".join(Task.Status.values)
        raise ValidationError({"status": [f"unknown status {unknown[0][:40]!r}; use some of {known}"]})
    return statuses


def _configuration(caller: Caller, text: str) -> RepositoryConfiguration | None:
    """A live configuration the caller's task list can name: its own, or Red Hat's or
    Community's (their tasks show those as their `object_uuid`)."""
    configuration_uuid = params.uuid_value(text, "repository_uuid")
    visible = selectors.configuration_list().filter(uuid=configuration_uuid, org_id__in=visible_orgs(caller))
    return visible.first()
