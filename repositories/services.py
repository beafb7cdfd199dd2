"""Writes of the repositories domain: keyword-only services that the API, the admin and the
commands call. Each runs in one transaction, with the tasks it enqueues: a configuration and
its tasks commit together, or neither does.

At most one introspect and one snapshot of a configuration are pending or running at a time:
the framework's unique keys hold that in the database (tasks.client.enqueue(unique_key=...)),
and asking for a second answers with TaskAlreadyQueued, naming the task that holds the key.
"""

import logging
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from repositories.exceptions import ConfigurationNotFound, InvalidInput, NightlyRunInProgress, SnapshotsNotEnabled
from repositories.models import Repository, RepositoryConfiguration
from repositories.validation import (
    clean_arch,
    clean_gpg_key,
    clean_name,
    clean_org,
    clean_versions,
    normalize_url,
)
from repositories.yum.fetch import redact
from tasks import client
from tasks.exceptions import TaskAlreadyQueued, TaskNotFound
from tasks.models import Task

logger = logging.getLogger(__name__)

INTROSPECT = "introspect"
SNAPSHOT = "snapshot"
DELETE_SNAPSHOTS = "delete-repository-snapshots"
# A repository task is about a configuration: its object_uuid is the configuration's uuid, the
# one the API and the admin show (a URL change moves the configuration to another Repository).
OBJECT_TYPE = "repository"


def unique_key(task_type: str, configuration: RepositoryConfiguration) -> str:
    """The key that allows one pending or running task of a type per configuration."""
    return f"{task_type}:{configuration.uuid}"


def repository_configuration_create(
    *,
    org_id: str,
    name: str,
    url: str,
    account_id: str = "",
    distribution_versions: Iterable[str] = (),
    distribution_arch: str = "any",
    gpg_key: str = "",
    metadata_verification: bool = False,
    module_hotfixes: bool = False,
    snapshot: bool = False,
    request_id: str | None = None,
) -> RepositoryConfiguration:
    """Add a repository to an organisation, and queue its introspection, and its first
    snapshot after it when `snapshot` is set.

    Raises InvalidInput (naming the field) for a bad value, or a name or URL that the
    organisation already uses.
    """
    fields = {
        "name": clean_name(name),
        "distribution_versions": clean_versions(distribution_versions),
        "distribution_arch": clean_arch(distribution_arch),
        "gpg_key": clean_gpg_key(gpg_key),
        "metadata_verification": bool(metadata_verification),
        "module_hotfixes": bool(module_hotfixes),
        "snapshot": bool(snapshot),
    }
    normalized = normalize_url(url)
    clean_org(org_id)
    if account_id:
        clean_org(account_id, field="account_id")
    with transaction.atomic():
        repository, _ = Repository.objects.get_or_create(url=normalized)
        configuration = _save_new(
            RepositoryConfiguration(org_id=org_id, account_id=account_id, repository=repository, **fields)
        )
        _queue_introspect_and_snapshot(configuration, force=True, request_id=request_id)
    # Once committed: a bulk create rolls back every configuration if one fails.
    transaction.on_commit(
        lambda: logger.info(
            "repository configuration created uuid=%s org_id=%s url=%s request_id=%s",
            configuration.uuid,
            org_id,
            normalized,
            request_id or "-",
        )
    )
    return configuration


def repository_configuration_update(
    *,
    configuration: RepositoryConfiguration,
    request_id: str | None = None,
    name: str | None = None,
    url: str | None = None,
    distribution_versions: Iterable[str] | None = None,
    distribution_arch: str | None = None,
    gpg_key: str | None = None,
    metadata_verification: bool | None = None,
    module_hotfixes: bool | None = None,
    snapshot: bool | None = None,
) -> RepositoryConfiguration:
    """Change the given fields of a configuration (None leaves a field as it is).

    A new URL cancels the configuration's pending or running introspect and snapshot and queues
    new ones; turning `snapshot` on queues a snapshot.
    """
    changes: dict[str, object] = {}
    if name is not None:
        changes["name"] = clean_name(name)
    if distribution_versions is not None:
        changes["distribution_versions"] = clean_versions(distribution_versions)
    if distribution_arch is not None:
        changes["distribution_arch"] = clean_arch(distribution_arch)
    if gpg_key is not None:
        changes["gpg_key"] = clean_gpg_key(gpg_key)
    for field, flag in (
        ("metadata_verification", metadata_verification),
        ("module_hotfixes", module_hotfixes),
        ("snapshot", snapshot),
    ):
        if flag is not None:
            changes[field] = bool(flag)
    normalized = normalize_url(url) if url is not None else None
    with transaction.atomic():
        current = _lock_live(configuration.uuid, configuration.org_id)
        url_changed = normalized is not None and normalized != current.repository.url
        snapshot_enabled = bool(changes.get("snapshot")) and not current.snapshot
        for field, value in changes.items():
            setattr(current, field, value)
        if url_changed:
            _cancel_active(current)
            current.repository, _ = Repository.objects.get_or_create(url=normalized)
        try:
            with transaction.atomic():
                current.save()
        except IntegrityError as exc:
            raise _duplicate(exc, current) from None
        if url_changed:
            _queue_introspect_and_snapshot(current, force=True, request_id=request_id)
        elif snapshot_enabled:
            _queue_snapshot(current, dependencies=[], request_id=request_id, already_queued_is_fine=True)
            current.save(update_fields=["last_snapshot_task"])
    return current


def repository_configuration_delete(
    *, configuration: RepositoryConfiguration, request_id: str | None = None
) -> uuid.UUID:
    """Soft-delete a configuration, cancel its pending or running introspect and snapshot, and
    queue the task that removes its snapshots and then the configuration itself."""
    with transaction.atomic():
        current = _lock_live(configuration.uuid, configuration.org_id)
        current.deleted_at = timezone.now()
        current.save(update_fields=["deleted_at", "updated_at"])
        _cancel_active(current)
        task_id = None
        while task_id is None:
            try:
                task_id = _enqueue(DELETE_SNAPSHOTS, current, request_id=request_id)
            except TaskAlreadyQueued as exc:  # deleted, restored by hand, deleted again
                task_id = exc.task_id  # None if that one ended meanwhile: queue a new one
    logger.info("repository configuration deleted uuid=%s request_id=%s", current.uuid, request_id or "-")
    return task_id


def repository_introspect(
    *, configuration: RepositoryConfiguration, force: bool = False, request_id: str | None = None
) -> uuid.UUID:
    """Queue an introspection of the configuration's repository; TaskAlreadyQueued if one is
    pending or running."""
    with transaction.atomic():
        current = _lock_live(configuration.uuid, configuration.org_id)
        task_id = _enqueue(INTROSPECT, current, request_id=request_id, force=force)
        current.last_introspection_task_id = task_id
        current.save(update_fields=["last_introspection_task", "updated_at"])
    return task_id


def repository_snapshot(*, configuration: RepositoryConfiguration, request_id: str | None = None) -> uuid.UUID:
    """Queue a snapshot of the configuration; SnapshotsNotEnabled when its flag is off,
    TaskAlreadyQueued if one is pending or running."""
    with transaction.atomic():
        current = _lock_live(configuration.uuid, configuration.org_id)
        if not current.snapshot:
            raise SnapshotsNotEnabled(f"snapshots are not enabled for the repository {current.name!r}")
        task_id = _queue_snapshot(current, dependencies=[], request_id=request_id)
        current.save(update_fields=["last_snapshot_task", "updated_at"])
    return task_id


@dataclass(frozen=True)
class Nightly:
    """What a nightly run queued, and what it found already queued."""

    introspections: int
    snapshots: int
    already_queued: int
    # Deletions queued again for deleted configurations whose deletion task was lost.
    deletions: int = 0


# The advisory lock that a nightly run holds: (class, object), the class being this app's, so
# that no other lock of the database shares the key.
NIGHTLY_LOCK = "hashtext('repositories'), hashtext('nightly')"


def repositories_nightly(*, batch_size: int = 500, request_id: str | None = None) -> Nightly:
    """Queue an introspection of every live configuration, and a snapshot after it where the
    flag is set, in batches of `batch_size` (a transaction each), and make them the
    configuration's last introspection and snapshot tasks; and queue again the deletion of
    every deleted configuration whose deletion task was lost (it failed for good, say).

    One run at a time, by an advisory lock: a second run while one goes on queues nothing and
    raises NightlyRunInProgress (run after the first, it would introspect again what the
    first's tasks have just introspected). A configuration that has a task pending or running
    is skipped."""
    with _nightly_lock():
        queued = _queue_nightly(batch_size=batch_size, request_id=request_id)
        deletions = _queue_lost_deletions(batch_size=batch_size, request_id=request_id)
    logger.info(
        "nightly run introspections=%d snapshots=%d already_queued=%d deletions=%d",
        queued.introspections,
        queued.snapshots,
        queued.already_queued,
        deletions,
    )
    return replace(queued, deletions=deletions)


@contextmanager
def _nightly_lock() -> Iterator[None]:
    """Hold the nightly lock: until the end of the run, or of the caller's transaction when
    there is one (which commits what the run queued only then)."""
    with connection.cursor() as cursor:
        transactional = connection.in_atomic_block
        cursor.execute(f"SELECT pg_try_advisory{'_xact' if transactional else ''}_lock({NIGHTLY_LOCK})")
        if not cursor.fetchone()[0]:
            raise NightlyRunInProgress("another nightly run is in progress: this one queued nothing")
        try:
            yield
        finally:
            if not transactional:
                cursor.execute(f"SELECT pg_advisory_unlock({NIGHTLY_LOCK})")


def _queue_lost_deletions(*, batch_size: int, request_id: str | None) -> int:
    """Queue the deletion of each deleted configuration that no deletion task holds the key of
    (pending, running, or failed and waiting for its retry); how many were queued."""
    queued = 0
    after = uuid.UUID(int=0)
    while True:
        with transaction.atomic():
            deleted = RepositoryConfiguration.objects.filter(deleted_at__isnull=False, uuid__gt=after)
            batch = list(deleted.order_by("uuid")[:batch_size])
            if not batch:
                break
            for configuration in batch:
                # The lost task's payload names what its runs left to release.
                lost = Task.objects.filter(unique_key=unique_key(DELETE_SNAPSHOTS, configuration)).order_by("-seq")
                try:
                    _enqueue(
                        DELETE_SNAPSHOTS,
                        configuration,
                        request_id=request_id,
                        payload=lost.values_list("payload", flat=True).first(),
                    )
                except TaskAlreadyQueued:
                    continue
                queued += 1
                logger.info("deletion queued again uuid=%s", configuration.uuid)
            after = batch[-1].uuid
    return queued


def _queue_nightly(*, batch_size: int, request_id: str | None) -> Nightly:
    introspections = snapshots = already = 0
    after = uuid.UUID(int=0)
    while True:
        with transaction.atomic():
            batch = list(
                RepositoryConfiguration.live.filter(uuid__gt=after)
                .select_related("repository")
                .order_by("uuid")[:batch_size]
            )
            if not batch:
                break
            for configuration in batch:
                queued: dict[str, uuid.UUID] = {}
                try:
                    queued["last_introspection_task_id"] = _enqueue(INTROSPECT, configuration, request_id=request_id)
                    introspections += 1
                except TaskAlreadyQueued:
                    # One is pending or running already: the snapshot below does not wait for it.
                    already += 1
                if configuration.snapshot:
                    introspect_id = queued.get("last_introspection_task_id")
                    try:  # after the new introspection, when one was queued
                        queued["last_snapshot_task_id"] = _enqueue(
                            SNAPSHOT,
                            configuration,
                            request_id=request_id,
                            dependencies=[introspect_id] if introspect_id else [],
                        )
                        snapshots += 1
                    except TaskAlreadyQueued:
                        already += 1
                if queued:  # as the services that queue one for a user do, so its end shows there
                    RepositoryConfiguration.objects.filter(uuid=configuration.uuid).update(**queued)
            after = batch[-1].uuid
    return Nightly(introspections=introspections, snapshots=snapshots, already_queued=already)


def _save_new(configuration: RepositoryConfiguration) -> RepositoryConfiguration:
    try:
        with transaction.atomic():
            configuration.save(force_insert=True)
    except IntegrityError as exc:
        raise _duplicate(exc, configuration) from None
    return configuration


def _duplicate(exc: IntegrityError, configuration: RepositoryConfiguration) -> InvalidInput:
    """The unique constraint a save broke, as the field the user can change."""
    constraint = getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None)
    if constraint == "repository_configurations_name":
        return InvalidInput(f"a repository named {configuration.name!r} already exists", field="name")
    if constraint == "repository_configurations_url":
        shown = redact(configuration.repository.url)
        return InvalidInput(f"a repository with the URL {shown} already exists", field="url")
    raise exc


def _lock_live(configuration_uuid: uuid.UUID, org_id: str) -> RepositoryConfiguration:
    """The live configuration, locked for the rest of the transaction."""
    try:
        return (
            RepositoryConfiguration.live.select_for_update(of=("self",))
            .select_related("repository")
            .get(uuid=configuration_uuid, org_id=org_id)
        )
    except RepositoryConfiguration.DoesNotExist:
        raise ConfigurationNotFound(f"repository {configuration_uuid} not found") from None


def _queue_introspect_and_snapshot(
    configuration: RepositoryConfiguration, *, force: bool, request_id: str | None
) -> None:
    introspect_id = _enqueue(INTROSPECT, configuration, request_id=request_id, force=force)
    configuration.last_introspection_task_id = introspect_id
    fields = ["last_introspection_task"]
    if configuration.snapshot:
        _queue_snapshot(configuration, dependencies=[introspect_id], request_id=request_id)
        fields.append("last_snapshot_task")
    configuration.save(update_fields=fields)


def _queue_snapshot(
    configuration: RepositoryConfiguration,
    *,
    dependencies: list[uuid.UUID],
    request_id: str | None,
    already_queued_is_fine: bool = False,
) -> uuid.UUID:
    try:
        task_id = _enqueue(SNAPSHOT, configuration, request_id=request_id, dependencies=dependencies)
    except TaskAlreadyQueued as exc:
        if not already_queued_is_fine or exc.task_id is None:
            raise
        task_id = exc.task_id
    configuration.last_snapshot_task_id = task_id
    return task_id


def _enqueue(
    task_type: str,
    configuration: RepositoryConfiguration,
    *,
    request_id: str | None,
    dependencies: list[uuid.UUID] | None = None,
    force: bool = False,
    payload: dict[str, object] | None = None,
) -> uuid.UUID:
    """Queue a task of the configuration, with its default payload unless `payload` is given."""
    if payload is None:
        payload = {"repository_configuration_uuid": str(configuration.uuid)}
        if task_type == INTROSPECT:
            payload = {"repository_uuid": str(configuration.repository_id), "force": force}
    return client.enqueue(
        task_type,
        payload,
        dependencies=dependencies or (),
        org_id=configuration.org_id,
        account_id=configuration.account_id or None,
        object_uuid=configuration.uuid,
        object_type=OBJECT_TYPE,
        request_id=request_id,
        unique_key=unique_key(task_type, configuration),
    )


def _cancel_active(configuration: RepositoryConfiguration) -> None:
    """Cancel the configuration's pending or running introspect and snapshot, in the order
    they were queued (the framework's lock order)."""
    keys = [unique_key(INTROSPECT, configuration), unique_key(SNAPSHOT, configuration)]
    active = Task.objects.filter(unique_key__in=keys, status__in=[Task.Status.PENDING, Task.Status.RUNNING])
    for task_id in active.order_by("seq").values_list("id", flat=True):
        try:
            client.cancel(task_id)
        except TaskNotFound:
            pass  # cleaned up meanwhile
