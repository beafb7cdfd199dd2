"""`repositories/`: the caller's repositories, their snapshots, and the tasks that introspect
and snapshot them. Thin: input is checked here for its shape, the domain's services decide."""

from typing import Any

from django.conf import settings
from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from contentsources.api import params
from contentsources.api.identity import caller_of
from contentsources.api.pagination import Envelope
from contentsources.api.parsers import JSON
from contentsources.api.request_id import request_id_of
from contentsources.api.schema import ApiSchema
from contentsources.api.tasks import TaskSerializer, task_response
from repositories import selectors, services
from repositories.exceptions import InvalidInput
from repositories.models import Repository, RepositoryConfiguration, Snapshot
from repositories.validation import ARCHES, normalize_url
from tasks.models import Task

ORDERINGS = {
    "name": ("name", "uuid"),
    "url": ("repository__url", "uuid"),
    "status": ("repository__status", "name", "uuid"),
    "package_count": ("repository__package_count", "name", "uuid"),
    "created_at": ("created_at", "uuid"),
}

# Repositories a bulk create takes at most: each is a transaction's worth of rows and tasks.
BULK_LIMIT = 100
ORDERING_CHOICES = [*ORDERINGS, *(f"-{key}" for key in ORDERINGS)]


def snapshot_url(request: Request, snapshot: Snapshot, org_id: str) -> str:
    """Where the snapshot is served as a yum repository."""
    return request.build_absolute_uri(f"/{settings.CONTENT_URL_PREFIX}{org_id}/{snapshot.uuid}/")


class SnapshotSerializer(serializers.Serializer[Snapshot]):
    uuid = serializers.UUIDField()
    created_at = serializers.DateTimeField()
    url = serializers.SerializerMethodField()
    content_counts = serializers.DictField(child=serializers.IntegerField())
    added_counts = serializers.DictField(child=serializers.IntegerField())
    removed_counts = serializers.DictField(child=serializers.IntegerField())

    def get_url(self, snapshot: Snapshot) -> str:
        return snapshot_url(self.context["request"], snapshot, self.context["org_id"])


class LastTaskSerializer(serializers.Serializer[Task]):
    uuid = serializers.UUIDField(source="id")
    status = serializers.CharField(help_text="as a task's (TaskStatusEnum)")
    type = serializers.CharField()
    created_at = serializers.DateTimeField(source="queued_at")
    ended_at = serializers.DateTimeField(source="finished_at", allow_null=True)
    error = serializers.CharField(allow_null=True)


class RepositorySerializer(serializers.Serializer[RepositoryConfiguration]):
    """A repository as the caller's organisation configured it, with what the tasks found."""

    uuid = serializers.UUIDField()
    name = serializers.CharField()
    url = serializers.CharField(source="repository.url")
    org_id = serializers.CharField()
    account_id = serializers.CharField()
    distribution_versions = serializers.ListField(child=serializers.CharField())
    distribution_arch = serializers.CharField()
    gpg_key = serializers.CharField()
    metadata_verification = serializers.BooleanField()
    module_hotfixes = serializers.BooleanField()
    snapshot = serializers.BooleanField()
    status = serializers.ChoiceField(source="repository.status", choices=Repository.Status.values)
    package_count = serializers.IntegerField(source="repository.package_count")
    last_introspection_time = serializers.DateTimeField(source="repository.last_introspection_time", allow_null=True)
    last_introspection_error = serializers.CharField(source="repository.last_introspection_error")
    failed_introspections_count = serializers.IntegerField(source="repository.failed_introspections_count")
    last_snapshot = serializers.SerializerMethodField()
    last_snapshot_task = LastTaskSerializer(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    @extend_schema_field(SnapshotSerializer(allow_null=True))
    def get_last_snapshot(self, configuration: RepositoryConfiguration) -> dict[str, Any] | None:
        if configuration.last_snapshot is None:
            return None
        return SnapshotSerializer(configuration.last_snapshot, context=self.context).data


class RepositoryInputSerializer(serializers.Serializer[Any]):
    """What a caller may set; the domain normalises and checks the values."""

    name = serializers.CharField(max_length=255, trim_whitespace=True)
    url = serializers.CharField(max_length=2048)
    distribution_versions = serializers.ListField(
        child=serializers.CharField(max_length=32), required=False, max_length=64
    )
    distribution_arch = serializers.ChoiceField(choices=ARCHES, required=False)
    gpg_key = serializers.CharField(required=False, allow_blank=True, max_length=65536, trim_whitespace=False)
    metadata_verification = serializers.BooleanField(required=False)
    module_hotfixes = serializers.BooleanField(required=False)
    snapshot = serializers.BooleanField(required=False)


REPOSITORY_FILTERS = [
    OpenApiParameter("name", OpenApiTypes.STR, description="exactly this name"),
    OpenApiParameter("url", OpenApiTypes.STR, description="exactly this URL (normalised)"),
    OpenApiParameter("status", OpenApiTypes.STR, enum=Repository.Status.values),
    OpenApiParameter("search", OpenApiTypes.STR, description="part of the name or URL"),
    OpenApiParameter(
        "ordering",
        OpenApiTypes.STR,
        enum=ORDERING_CHOICES,
        description="sort by this field; a leading - reverses",
    ),
]
TASK_CREATED = {
    201: TaskSerializer,
    400: OpenApiResponse(description="a malformed UUID, or a snapshot of a repository without snapshots"),
    409: OpenApiResponse(description="one is pending or running: the detail names it"),
}


def bulk_input(**kwargs: Any) -> serializers.ListSerializer[Any]:
    """What bulk_create takes, in its schema too: a list of 1 to BULK_LIMIT inputs."""
    return serializers.ListSerializer(child=RepositoryInputSerializer(), min_length=1, max_length=BULK_LIMIT, **kwargs)


class RepositoryViewSet(viewsets.ViewSet):
    schema = ApiSchema()
    parser_classes = [JSON]
    lookup_field = "uuid"
    lookup_value_regex = "[^/]+"
    pagination_class = Envelope

    @extend_schema(
        operation_id="listRepositories", parameters=REPOSITORY_FILTERS, responses=RepositorySerializer(many=True)
    )
    def list(self, request: Request) -> Response:
        caller = caller_of(request)
        url = params.text(request, "url")
        configurations = selectors.configuration_list(
            org_id=caller.org_id,
            name=params.text(request, "name"),
            url=_normalized_url(url) if url else None,
            status=params.choice(request, "status", Repository.Status.values),
            search=params.text(request, "search"),
        ).select_related("last_snapshot_task")
        configurations = configurations.order_by(*_ordering(params.choice(request, "ordering", ORDERING_CHOICES)))
        paginator = Envelope()
        page: Any = paginator.paginate_queryset(configurations, request, self)
        context = {"request": request, "org_id": caller.org_id}
        return paginator.get_paginated_response(RepositorySerializer(page, many=True, context=context).data)

    @extend_schema(
        operation_id="createRepository", request=RepositoryInputSerializer, responses={201: RepositorySerializer}
    )
    def create(self, request: Request) -> Response:
        configuration = _create(request, _valid(RepositoryInputSerializer(data=request.data)))
        return self._repository(request, str(configuration.uuid), status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="bulkCreateRepositories",
        request=bulk_input(),
        responses={201: RepositorySerializer(many=True)},
    )
    @action(detail=False, methods=["post"], pagination_class=None)
    def bulk_create(self, request: Request) -> Response:
        """Create several repositories (at most 100), all or none: one that cannot be created
        is a 400 naming its position and field, and no repository is created."""
        if isinstance(request.data, list) and not 1 <= len(request.data) <= BULK_LIMIT:
            raise ValidationError(f"give 1 to {BULK_LIMIT} repositories, not {len(request.data)}")
        inputs = _valid(bulk_input(data=request.data))
        created = []
        with transaction.atomic():
            for position, fields in enumerate(inputs):
                try:
                    created.append(_create(request, fields).uuid)
                except InvalidInput as exc:
                    raise ValidationError({f"{position}.{exc.field}": [str(exc)]}) from None
        context = {"request": request, "org_id": caller_of(request).org_id}
        configurations: Any = sorted(
            self._configurations(request).filter(uuid__in=created), key=lambda c: created.index(c.uuid)
        )
        return Response(RepositorySerializer(configurations, many=True, context=context).data, status=201)

    @extend_schema(operation_id="getRepository", responses=RepositorySerializer)
    def retrieve(self, request: Request, uuid: str) -> Response:
        return self._repository(request, uuid)

    @extend_schema(
        operation_id="partialUpdateRepository",
        request=RepositoryInputSerializer(partial=True),
        responses=RepositorySerializer,
    )
    def partial_update(self, request: Request, uuid: str) -> Response:
        fields = _valid(RepositoryInputSerializer(data=request.data, partial=True))
        configuration = _configuration(request, uuid)
        services.repository_configuration_update(
            configuration=configuration, request_id=request_id_of(request), **fields
        )
        return self._repository(request, str(configuration.uuid))

    @extend_schema(operation_id="deleteRepository", responses={204: OpenApiResponse(description="deleted")})
    def destroy(self, request: Request, uuid: str) -> Response:
        configuration = _configuration(request, uuid)
        services.repository_configuration_delete(configuration=configuration, request_id=request_id_of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(operation_id="introspectRepository", request=None, responses=TASK_CREATED)
    @action(detail=True, methods=["post"])
    def introspect(self, request: Request, uuid: str) -> Response:
        caller = caller_of(request)
        configuration = _configuration(request, uuid)
        task_id = services.repository_introspect(configuration=configuration, request_id=request_id_of(request))
        return task_response(caller, task_id, status_code=status.HTTP_201_CREATED)

    @extend_schema(operation_id="snapshotRepository", request=None, responses=TASK_CREATED)
    @action(detail=True, methods=["post"])
    def snapshot(self, request: Request, uuid: str) -> Response:
        caller = caller_of(request)
        configuration = _configuration(request, uuid)
        task_id = services.repository_snapshot(configuration=configuration, request_id=request_id_of(request))
        return task_response(caller, task_id, status_code=status.HTTP_201_CREATED)

    @extend_schema(operation_id="listSnapshots", responses=SnapshotSerializer(many=True))
    @action(detail=True, methods=["get"])
    def snapshots(self, request: Request, uuid: str) -> Response:
        caller = caller_of(request)
        configuration = _configuration(request, uuid)
        paginator = Envelope()
        page: Any = paginator.paginate_queryset(selectors.snapshot_list(configuration=configuration), request, self)
        context = {"request": request, "org_id": caller.org_id}
        return paginator.get_paginated_response(SnapshotSerializer(page, many=True, context=context).data)

    def _configurations(self, request: Request) -> Any:
        return selectors.configuration_list(org_id=caller_of(request).org_id).select_related("last_snapshot_task")

    def _repository(self, request: Request, uuid: Any, status_code: int = status.HTTP_200_OK) -> Response:
        caller = caller_of(request)
        configuration = _configuration(request, uuid)
        context = {"request": request, "org_id": caller.org_id}
        return Response(RepositorySerializer(configuration, context=context).data, status=status_code)


def _configuration(request: Request, uuid: str) -> RepositoryConfiguration:
    """The caller's live configuration: a malformed UUID is a 400, another organisation's a 404."""
    return selectors.configuration_get(org_id=caller_of(request).org_id, uuid=params.uuid_value(uuid, "uuid"))


def _valid(serializer: serializers.BaseSerializer[Any]) -> Any:
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _create(request: Request, fields: dict[str, Any]) -> RepositoryConfiguration:
    caller = caller_of(request)
    return services.repository_configuration_create(
        org_id=caller.org_id, account_id=caller.account_number, request_id=request_id_of(request), **fields
    )


def _normalized_url(url: str) -> str:
    try:
        return normalize_url(url)
    except InvalidInput as exc:
        raise ValidationError({"url": [str(exc)]}) from None


def _ordering(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ORDERINGS["name"]
    fields = ORDERINGS[text.removeprefix("-")]
    return tuple(f"-{field}" for field in fields) if text.startswith("-") else fields
