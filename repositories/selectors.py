"""Reads of the repositories domain, scoped to an organisation where the data is its own."""

import uuid

from django.contrib.postgres.expressions import ArraySubquery
from django.core.exceptions import ValidationError
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.db.models.lookups import Exact

from repositories.exceptions import ConfigurationNotFound
from repositories.models import Package, RepositoryConfiguration, Snapshot, SnapshotFile
from repositories.services import OBJECT_TYPE
from tasks.models import Task, TaskDependency


def configuration_list(
    *,
    org_id: str | None = None,
    name: str | None = None,
    url: str | None = None,
    status: str | None = None,
    search: str | None = None,
) -> QuerySet[RepositoryConfiguration]:
    """Live configurations, by name, with their repository and last snapshot."""
    configurations = RepositoryConfiguration.live.select_related("repository", "last_snapshot").order_by("name", "uuid")
    if org_id is not None:
        configurations = configurations.filter(org_id=org_id)
    if name is not None:
        configurations = configurations.filter(name=name)
    if url is not None:
        configurations = configurations.filter(repository__url=url)
    if status is not None:
        configurations = configurations.filter(repository__status=status)
    if search:
        configurations = configurations.filter(Q(name__icontains=search) | Q(repository__url__icontains=search))
    return configurations


def configuration_get(*, org_id: str | None, uuid: uuid.UUID | str) -> RepositoryConfiguration:
    """A live configuration of the organisation (of any, with org_id None)."""
    try:
        return configuration_list(org_id=org_id).get(uuid=uuid)
    except (RepositoryConfiguration.DoesNotExist, ValidationError):
        raise ConfigurationNotFound(f"repository {uuid} not found") from None


def configuration_by_name(*, org_id: str, name: str) -> RepositoryConfiguration:
    try:
        return configuration_list(org_id=org_id).get(name=name)
    except RepositoryConfiguration.DoesNotExist:
        raise ConfigurationNotFound(f"no repository named {name!r} in org {org_id}") from None


def snapshot_list(*, configuration: RepositoryConfiguration) -> QuerySet[Snapshot]:
    """The configuration's snapshots, newest first."""
    return Snapshot.objects.filter(repository_configuration=configuration).order_by("-created_at", "-uuid")


def snapshot_file(*, org_id: str, snapshot_uuid: uuid.UUID, path: str) -> SnapshotFile | None:
    """A file of a snapshot of the organisation, by the path it is served at."""
    return (
        SnapshotFile.objects.select_related("snapshot", "blob", "snapshot__repository_configuration")
        .filter(snapshot_id=snapshot_uuid, snapshot__repository_configuration__org_id=org_id, path=path)
        .first()
    )


def snapshot_get(*, org_id: str, snapshot_uuid: uuid.UUID) -> Snapshot | None:
    return (
        Snapshot.objects.select_related("repository_configuration__repository")
        .filter(uuid=snapshot_uuid, repository_configuration__org_id=org_id)
        .first()
    )


def package_list(*, configuration: RepositoryConfiguration) -> QuerySet[Package]:
    """The packages of the configuration's repository, by name."""
    return Package.objects.filter(repositories=configuration.repository_id).order_by("name", "epoch", "version", "id")


def task_list(
    *,
    orgs: list[str],
    statuses: list[str] | None = None,
    types: list[str] | None = None,
    configuration: RepositoryConfiguration | None = None,
) -> QuerySet[Task]:
    """Tasks of these organisations, newest first, each with the name of the configuration it
    is about (`object_name`: a repository task's object_uuid is its configuration's) and the
    ids of its dependencies and dependents."""
    tasks = Task.objects.filter(org_id__in=orgs)
    if statuses:
        tasks = tasks.filter(status__in=statuses)
    if types:
        tasks = tasks.filter(type__in=types)
    if configuration is not None:
        # Its own tasks, whatever URL it had then, and those of the other configurations of
        # these organisations that now lead to its Repository (Red Hat's introspection of the
        # same URL, say).
        sharing = RepositoryConfiguration.objects.filter(repository_id=configuration.repository_id, org_id__in=orgs)
        tasks = tasks.filter(object_type=OBJECT_TYPE, object_uuid__in=sharing.values("uuid"))
    # One probe of the configurations' primary key per task of the page.
    about = RepositoryConfiguration.objects.filter(
        Exact(OuterRef("object_type"), OBJECT_TYPE), uuid=OuterRef("object_uuid"), org_id=OuterRef("org_id")
    )
    return tasks.annotate(
        object_name=Subquery(about.values("name")[:1]),
        dependency_ids=ArraySubquery(TaskDependency.objects.filter(task_id=OuterRef("id")).values("dependency_id")),
        dependent_ids=ArraySubquery(TaskDependency.objects.filter(dependency_id=OuterRef("id")).values("task_id")),
    ).order_by("-queued_at", "-id")
