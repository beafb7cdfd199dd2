"""`snapshot`: freeze a configuration's repository metadata, to serve it back as a yum
repository.

Every file repomd.xml lists (and repomd.xml itself, and its detached signature repomd.xml.asc
where the repository has one) is downloaded, its declared checksum verified, and stored by its
sha256 (repositories.storage); then the snapshot, its files and its counts are recorded in one
transaction. A run that fails or is cancelled deletes the files stored for this task that
nothing references, and records nothing.

Each blob is named in the task's payload before it is stored, so that a run after a rescue
(its worker killed part way) knows what the dead run may have stored, and removes it too if
it fails. The snapshot is recorded only while the run still owns its task (a fenced payload
update in the same transaction): a run that was cancelled or rescued without having heard of
it yet records nothing. Run again after it recorded its snapshot, it finds it and does
nothing more; a run that records removes what an earlier, killed run stored and this one does
not use.

A run that was killed and never runs again (its task cancelled, its configuration deleted)
cannot remove what it stored: each run starts with the garbage collection of such files
(`repositories.storage.collect_garbage`).
"""

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from posixpath import normpath

from django.db import transaction

from repositories.exceptions import MalformedMetadata, RepositoryError, Stopped
from repositories.interruptible import interruptible_statements
from repositories.models import RepositoryConfiguration, Snapshot, SnapshotFile
from repositories.services import SNAPSHOT
from repositories.storage import collect_garbage, hold_blobs, open_blob, release_blobs, store_blob
from repositories.yum import YumRepository
from repositories.yum.checksum import file_checksum
from repositories.yum.compression import decompressed
from repositories.yum.content import advisory_ids, comps_ids, module_stream_ids
from repositories.yum.packages import iter_packages
from repositories.yum.repomd import PRIMARY, REPOMD_PATH, REPOMD_SIGNATURE_PATH
from repositories.yum.repository import COMPS_TYPES, MODULES
from repositories.yum.stopping import StopCheck, stop_if_asked
from tasks.context import TaskContext
from tasks.registry import handler

REPOMD = "repomd"
REPOMD_SIGNATURE = "repomd_signature"
UPDATEINFO = "updateinfo"
# Content types as the original's API names them (Pulp's).
PACKAGES, ADVISORIES = "rpm.package", "rpm.advisory"
GROUPS, ENVIRONMENTS, MODULE_STREAMS = "rpm.packagegroup", "rpm.packageenvironment", "rpm.modulemd"
# How much of a stored file is read back at a time.
COPY_CHUNK = 1024 * 1024
# The payload's list of the blobs that runs of this task stored, or were about to.
STORED = "stored_blobs"


@dataclass(frozen=True)
class StoredFile:
    path: str
    type: str
    sha256: str
    local: Path  # the downloaded file, to store again if it was deleted meanwhile


@dataclass(frozen=True)
class Content:
    """What a snapshot holds: counts by type, and the identities of each type's content, which
    added and removed compare (a package by its checksum, an advisory by its id, a group or an
    environment by its id, a module stream by name:stream:version:context:arch)."""

    counts: dict[str, int]
    identities: dict[str, frozenset[object]]


# A metadata file's type to its decompressed copy and how errors name it, or None if absent.
Opener = Callable[[str], tuple[Path, str] | None]


@handler(SNAPSHOT, cancellable=True, failures=(RepositoryError,))
def snapshot(context: TaskContext) -> None:
    configuration = (
        RepositoryConfiguration.objects.select_related("repository")
        .filter(uuid=context.payload["repository_configuration_uuid"])
        .first()
    )
    if Snapshot.objects.filter(task_id=context.task.id).exists():
        context.logger.info("snapshot already recorded by an earlier run of this task")
        return
    if configuration is None or configuration.deleted_at is not None:
        release_blobs(_stored(context))  # those of an earlier run, if it died
        context.logger.info("repository configuration deleted, nothing to snapshot")
        return
    try:
        collect_garbage(should_stop=lambda: context.stop_requested)  # what killed runs of other tasks left
        recorded = _take(context, configuration)
    except Stopped:
        release_blobs(_stored(context))
        context.raise_if_cancelled()
        raise
    except BaseException:
        # Also when the run lost its task: were it rescued rather than cancelled, the run that
        # owns it now stores again, when it records, what this one removed.
        release_blobs(_stored(context))
        raise
    if recorded is None:  # the configuration was deleted meanwhile
        release_blobs(_stored(context))
        return
    # Those an earlier run stored, killed part way, that this run's snapshot does not use (the
    # upstream changed between the runs).
    used = set(recorded.files.values_list("blob_id", flat=True))
    release_blobs(set(_stored(context)) - used)
    context.logger.info(
        "snapshot taken uuid=%s configuration=%s packages=%d",
        recorded.uuid,
        configuration.uuid,
        recorded.content_counts.get(PACKAGES, 0),
    )


def _stored(context: TaskContext) -> list[str]:
    return list(context.payload.get(STORED, []))


def _take(context: TaskContext, configuration: RepositoryConfiguration) -> Snapshot | None:
    with tempfile.TemporaryDirectory(prefix="snapshot-") as scratch:
        directory = Path(scratch)
        yum = YumRepository(configuration.repository.url, directory / "new", should_stop=lambda: context.stop_requested)
        (directory / "new").mkdir()
        repomd = yum.repomd()
        files = {REPOMD_PATH: _store(context, yum.repomd_file, REPOMD_PATH, REPOMD)}
        if (signature := yum.repomd_signature()) is not None:
            files[REPOMD_SIGNATURE_PATH] = _store(context, signature, REPOMD_SIGNATURE_PATH, REPOMD_SIGNATURE)
        for record in repomd.files:
            context.raise_if_cancelled()
            path = _served_path(record.location_href, yum.shown_url)
            if path not in files:
                files[path] = _store(context, yum.download(record), path, record.type)
        context.raise_if_cancelled()
        content = _content(yum)
        previous = _previous_content(configuration, directory / "previous", should_stop=yum.should_stop)
        return _record(context, configuration, files, content, previous)


def _record(
    context: TaskContext,
    configuration: RepositoryConfiguration,
    files: dict[str, StoredFile],
    content: Content,
    previous: Content | None,
) -> Snapshot | None:
    """Record the snapshot, unless the configuration was deleted meanwhile (None)."""
    with transaction.atomic():
        with interruptible_statements(lambda: context.stop_requested, "snapshot"):
            current = RepositoryConfiguration.objects.select_for_update().filter(uuid=configuration.uuid).first()
        if current is None or current.deleted_at is not None:
            return None
        # The fence: raises TaskLost unless this run still owns its task, whose row it then
        # holds until the snapshot commits (a cancel waits for it). Lock order: the
        # configuration, then the task, as the services' cancels take them.
        context.update_payload(context.payload)
        # Keep the blobs until the snapshot references them: another run may have deleted one
        # that this run found stored (and so did not store itself), when it failed.
        hold_blobs({file.sha256: file.local for file in files.values()})
        taken = Snapshot.objects.create(
            repository_configuration=current,
            repomd_id=files[REPOMD_PATH].sha256,
            content_counts=content.counts,
            added_counts=_difference(content, previous),
            removed_counts=_difference(previous, content) if previous is not None else {},
            task_id=context.task.id,
        )
        SnapshotFile.objects.bulk_create(
            SnapshotFile(snapshot=taken, path=file.path, type=file.type, blob_id=file.sha256) for file in files.values()
        )
        current.last_snapshot = taken
        current.last_snapshot_task_id = context.task.id
        current.save(update_fields=["last_snapshot", "last_snapshot_task", "updated_at"])
    return taken


def _served_path(location_href: str, shown_url: str) -> str:
    """Where the snapshot serves a file: its location in the repository, which must stay
    inside it."""
    path = normpath(location_href)
    if path.startswith(("..", "/")) or path in (".", REPOMD_PATH, REPOMD_SIGNATURE_PATH):
        raise MalformedMetadata(f"repodata/repomd.xml of {shown_url} lists a file outside the repository: {path}")
    return path


def _store(context: TaskContext, path: Path, served_at: str, type: str) -> StoredFile:
    sha256 = file_checksum(path, "sha256", shown_as=served_at)
    stored = _stored(context)
    if sha256 not in stored:
        # Named before it is stored: a worker killed in between leaves a name with nothing
        # behind it, never a blob that no run knows of.
        context.update_payload({**context.payload, STORED: [*stored, sha256]})
    store_blob(path, sha256=sha256, size=path.stat().st_size)
    return StoredFile(path=served_at, type=type, sha256=sha256, local=path)


def _content(yum: YumRepository) -> Content:
    counts = yum.content_counts()

    def opened(type: str) -> tuple[Path, str] | None:
        path = yum.metadata(type)
        return (path, type) if path is not None else None

    return Content(
        counts={
            PACKAGES: counts.packages,
            ADVISORIES: counts.advisories,
            GROUPS: counts.package_groups,
            ENVIRONMENTS: counts.environments,
            MODULE_STREAMS: counts.module_streams,
        },
        identities=_identities(opened, should_stop=yum.should_stop),
    )


def _previous_content(
    configuration: RepositoryConfiguration, directory: Path, *, should_stop: StopCheck
) -> Content | None:
    """The content of the configuration's newest snapshot, read back from the snapshot
    storage; None before its first."""
    previous = Snapshot.objects.filter(repository_configuration=configuration).order_by("-created_at").first()
    if previous is None:
        return None
    directory.mkdir()
    stored = {file.type: file for file in previous.files.all()}

    def opened(type: str) -> tuple[Path, str] | None:
        if type not in stored:
            return None
        shown_as = stored[type].path
        copy = _copy_out(stored[type], directory, should_stop=should_stop)
        return decompressed(copy, shown_as=shown_as, should_stop=should_stop), shown_as

    return Content(counts=previous.content_counts, identities=_identities(opened, should_stop=should_stop))


def _identities(opened: Opener, *, should_stop: StopCheck) -> dict[str, frozenset[object]]:
    """The identities of the content of each type, from the metadata files that `opened` gives."""
    identities: dict[str, frozenset[object]] = {}
    if (primary := opened(PRIMARY)) is not None:
        packages = iter_packages(primary[0], shown_as=primary[1], should_stop=should_stop)
        identities[PACKAGES] = frozenset((package.checksum_type, package.checksum) for package in packages)
    if (updateinfo := opened(UPDATEINFO)) is not None:
        stop_if_asked(should_stop, f"parse of {updateinfo[1]}")
        identities[ADVISORIES] = frozenset(advisory_ids(updateinfo[0], shown_as=updateinfo[1]))
    # The first listed of comps.xml's plain and compressed forms, as the counts read it.
    if (comps := next(filter(None, map(opened, COMPS_TYPES)), None)) is not None:
        groups, environments = comps_ids(comps[0], shown_as=comps[1], should_stop=should_stop)
        identities[GROUPS], identities[ENVIRONMENTS] = frozenset(groups), frozenset(environments)
    if (modules := opened(MODULES)) is not None:
        identities[MODULE_STREAMS] = frozenset(
            module_stream_ids(modules[0], shown_as=modules[1], should_stop=should_stop)
        )
    return identities


def _copy_out(file: SnapshotFile, directory: Path, *, should_stop: StopCheck) -> Path:
    target = directory / PurePosixPath(file.path).name
    source = open_blob(file.blob_id)
    try:
        with target.open("wb") as out:
            while chunk := source.read(COPY_CHUNK):
                stop_if_asked(should_stop, f"copy of the stored {file.path}")
                out.write(chunk)
    finally:
        source.close()
    return target


def _difference(content: Content, other: Content | None) -> dict[str, int]:
    """How much of each type `content` has that `other` has not, by identity."""
    if other is None:
        return dict(content.counts)
    return {
        type: len(content.identities.get(type, frozenset()) - other.identities.get(type, frozenset()))
        for type in content.counts
    }
