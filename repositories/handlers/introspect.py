"""`introspect`: read a repository's metadata and record its packages and state.

Not requeueable, as in the original: a failed introspection is counted on the repository and
tried again by the next one (the nightly run, or a user's). A repository whose repomd.xml is
unchanged since its last success is not parsed again, unless the payload says `force`. What a
run found is recorded only while it owns its task: a cancelled run records nothing.

The configurations of many organisations share a repository: its introspections run one at a
time, and one that finds that an introspection started after it was queued has ended since
ends as that one did (a nightly run queues one for each organisation, and the repository is
downloaded once).
"""

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from django.db import OperationalError, connection, models, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import F
from django.utils import timezone
from psycopg.errors import LockNotAvailable

from repositories.exceptions import (
    FetchTimeout,
    HostNotFound,
    HostUnreachable,
    HTTPNotFound,
    HTTPStatusError,
    IntrospectionFailed,
    MalformedMetadata,
    RepositoryError,
    Stopped,
    TLSError,
    TruncatedDownload,
)
from repositories.interruptible import interruptible_statements
from repositories.models import ERROR_LIMIT, Repository
from repositories.models import Package as PackageRow
from repositories.services import INTROSPECT
from repositories.yum import YumRepository
from repositories.yum.fetch import redact
from repositories.yum.packages import Package
from repositories.yum.repomd import PRIMARY, Repomd
from tasks.context import TaskContext
from tasks.registry import handler

# How often (in packages) the handler looks for a cancellation while it stores packages.
CHECK_EVERY = 1000
# The repository's introspection lock: (class, object), the class being this task type's.
INTROSPECTION_LOCK = "hashtext('introspect'), hashtext(%s)"
# How long a task waits for the lock before it goes on without it (a holder that hangs).
LOCK_WAIT_LIMIT = 30 * 60.0


def _max_length(model: type[models.Model], field: str) -> int:
    column = model._meta.get_field(field)
    assert isinstance(column, models.CharField) and column.max_length is not None
    return column.max_length


# The longest values the packages table holds (repositories.models.Package), and an epoch's range.
_LIMITS = {
    field: _max_length(PackageRow, field)
    for field in ("name", "arch", "version", "release", "checksum_type", "checksum")
}
EPOCH_MAX = 2**31 - 1
REVISION_LIMIT = _max_length(Repository, "revision")
# Errors of reaching the repository, rather than of what it serves.
UNREACHABLE = (HostNotFound, HostUnreachable, TLSError, FetchTimeout, TruncatedDownload)


@handler(INTROSPECT, cancellable=True, failures=(RepositoryError,))
def introspect(context: TaskContext) -> None:
    repository_uuid = context.payload["repository_uuid"]
    with _one_introspection_at_a_time(repository_uuid, context):
        repository = Repository.objects.filter(uuid=repository_uuid).first()
        if repository is None:
            context.logger.info("repository gone, nothing to introspect")
            return
        if _introspected_since(repository, context.task.queued_at):
            _adopt(repository, context)
            return
        _introspect(repository, context)


@contextmanager
def _one_introspection_at_a_time(repository_uuid: str, context: TaskContext) -> Iterator[None]:
    """Hold the repository's introspection lock: the configurations of many organisations
    share a repository, and the introspections that they queue at once (the nightly run's)
    download it one after the other, the later ones finding the first's result. A session
    lock of the database: a worker that dies lets go of it with its connection. A cancel
    interrupts the wait (interruptible_statements); past LOCK_WAIT_LIMIT (a holder that
    hangs), the task goes on without the lock."""
    locked = _lock(repository_uuid, context)
    try:
        yield
    finally:
        if locked:
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT pg_advisory_unlock({INTROSPECTION_LOCK})", [repository_uuid])


def _lock(repository_uuid: str, context: TaskContext) -> bool:
    """Wait for the repository's introspection lock; whether it was taken."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            with interruptible_statements(lambda: context.stop_requested, "wait for the introspection lock"):
                cursor.execute(f"SET LOCAL lock_timeout = {int(LOCK_WAIT_LIMIT * 1000)}")
                cursor.execute(f"SELECT pg_advisory_lock({INTROSPECTION_LOCK})", [repository_uuid])
    except OperationalError as exc:
        if not isinstance(exc.__cause__, LockNotAvailable):
            raise
        context.logger.warning("another introspection of the repository holds its lock; going on without it")
        return False
    except Stopped:
        context.raise_if_cancelled()
        raise
    return True


def _introspected_since(repository: Repository, queued_at: datetime) -> bool:
    """Whether an introspection that started after this task was queued has ended: its
    result is as fresh as this task asked for."""
    return repository.last_introspection_time is not None and repository.last_introspection_time >= queued_at


def _adopt(repository: Repository, context: TaskContext) -> None:
    """End as the introspection that ran meanwhile (another organisation's) ended, recording
    nothing more: neither a second visit nor a second failure."""
    shown = redact(repository.url)
    if repository.last_introspection_success_time == repository.last_introspection_time:
        context.logger.info("repository introspected meanwhile by another task url=%s", shown)
        return
    raise IntrospectionFailed(repository.last_introspection_error or f"the introspection of {shown} failed")


def _introspect(repository: Repository, context: TaskContext) -> None:
    started = timezone.now()
    with tempfile.TemporaryDirectory(prefix="introspect-") as scratch:
        yum = YumRepository(repository.url, Path(scratch), should_stop=lambda: context.stop_requested)
        try:
            repomd = yum.repomd()
            force = bool(context.payload.get("force"))
            if _unchanged(repository, repomd) and not force:
                with transaction.atomic():
                    context.update_payload(context.payload)  # the fence: see _store_packages
                    _record_success(repository.uuid, repomd, started=started, package_count=None)
                context.logger.info("repository unchanged url=%s", yum.shown_url)
                return
            primary = repomd.file(PRIMARY)
            assert primary is not None  # parse_repomd refuses a repomd.xml without one
            shown_as = f"{primary.location_href} of {yum.shown_url}"
            count = _store_packages(
                repository.uuid, repomd, yum.packages(), context, force=force, started=started, shown_as=shown_as
            )
        except Stopped:
            context.raise_if_cancelled()
            raise
        except RepositoryError as exc:
            _record_failure(repository.uuid, exc, started=started)
            raise
    if count is None:
        context.logger.info("repository unchanged, stored meanwhile by another introspection url=%s", yum.shown_url)
    else:
        context.logger.info("repository introspected url=%s packages=%d", yum.shown_url, count)


def _unchanged(repository: Repository, repomd: Repomd) -> bool:
    """Whether the repository's last introspection succeeded on this very repomd.xml."""
    return repository.status == Repository.Status.VALID and repository.repomd_checksum == repomd.checksum


def _store_packages(
    repository_uuid: uuid.UUID,
    repomd: Repomd,
    packages: Iterator[Package],
    context: TaskContext,
    *,
    force: bool,
    started: datetime,
    shown_as: str,
) -> int | None:
    """Make the repository's packages exactly those listed, and record the success, in one
    transaction: a cancel or a failure part way leaves the previous set and state. The
    packages stream through COPY into a temporary table, so memory stays that of one package.

    Every wait and write before the fence is interrupted by a cancel (interruptible_statements),
    and the foreign keys are checked as the writes go rather than at the commit: the fence, which
    holds the task row until the commit, is taken last, so a cancel never waits long for it.

    None, with nothing parsed, when another introspection stored this revision meanwhile.
    """
    count = None
    with transaction.atomic(), connection.cursor() as cursor:
        with interruptible_statements(lambda: context.stop_requested, f"introspection of {shown_as}"):
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            # One introspection of a repository writes at a time. The configurations of many
            # organisations may share the repository, and the nightly run introspects each: those
            # that waited here for the first find the revision it stored.
            current = Repository.objects.select_for_update().filter(uuid=repository_uuid).first()
            if current is not None and (force or not _unchanged(current, repomd)):
                count = _write_packages(cursor, repository_uuid, packages, context, shown_as=shown_as)
        context.raise_if_cancelled()
        # The fence: raises TaskLost unless this run still owns its task (a cancel, or a
        # rescue, that it has not heard of yet), and holds the task until the commit.
        context.update_payload(context.payload)
        if current is not None:
            _record_success(repository_uuid, repomd, started=started, package_count=count)
    return count


def _write_packages(
    cursor: CursorWrapper,
    repository_uuid: uuid.UUID,
    packages: Iterator[Package],
    context: TaskContext,
    *,
    shown_as: str,
) -> int:
    """Store the packages and make them the repository's; their number."""
    cursor.execute(
        "CREATE TEMPORARY TABLE introspected (name text, arch text, version text, release text, epoch int,"
        " checksum_type text, checksum text, summary text) ON COMMIT DROP"
    )
    with cursor.copy("COPY introspected FROM STDIN") as copy:
        for position, package in enumerate(packages, start=1):
            if position % CHECK_EVERY == 0:
                context.raise_if_cancelled()
            copy.write_row(_row(package, position, shown_as=shown_as))
    context.raise_if_cancelled()
    cursor.execute(
        "INSERT INTO packages (name, arch, version, release, epoch, checksum_type, checksum, summary)"
        " SELECT DISTINCT ON (checksum_type, checksum) name, arch, version, release, epoch, checksum_type,"
        " checksum, summary FROM introspected ORDER BY checksum_type, checksum"
        " ON CONFLICT (checksum_type, checksum) DO NOTHING"
    )
    context.raise_if_cancelled()
    cursor.execute(
        "DELETE FROM repositories_packages rp WHERE rp.repository_id = %s AND NOT EXISTS ("
        " SELECT FROM introspected i JOIN packages p USING (checksum_type, checksum) WHERE p.id = rp.package_id)",
        [repository_uuid],
    )
    context.raise_if_cancelled()
    cursor.execute(
        "INSERT INTO repositories_packages (repository_id, package_id)"
        " SELECT DISTINCT %s::uuid, p.id FROM introspected i JOIN packages p USING (checksum_type, checksum)"
        " ON CONFLICT DO NOTHING",
        [repository_uuid],
    )
    cursor.execute("SELECT count(*) FROM repositories_packages WHERE repository_id = %s", [repository_uuid])
    return int(cursor.fetchone()[0])


def _row(package: Package, position: int, *, shown_as: str) -> tuple[object, ...]:
    """A package as the temporary table takes it, within the limits of the packages table (a
    value over them is the metadata's fault, not the database's); PostgreSQL text holds no NUL."""
    text = {
        "name": package.name,
        "arch": package.arch,
        "version": package.version,
        "release": package.release,
        "checksum_type": package.checksum_type,
        "checksum": package.checksum,
    }
    clean = {field: value.replace("\x00", "") for field, value in text.items()}
    for field, value in clean.items():
        limit = _LIMITS[field]
        if len(value) > limit:
            raise MalformedMetadata(
                f"{shown_as} lists a package (number {position}) whose {field} is longer than {limit} characters"
            )
    if not 0 <= package.epoch <= EPOCH_MAX:
        raise MalformedMetadata(
            f"{shown_as} gives the package {clean['name']} the epoch {package.epoch}, which is out of range"
        )
    summary = package.summary.replace("\x00", "")
    return (
        clean["name"],
        clean["arch"],
        clean["version"],
        clean["release"],
        package.epoch,
        clean["checksum_type"],
        clean["checksum"],
        summary,
    )


def _record_success(
    repository_uuid: uuid.UUID, repomd: Repomd, *, started: datetime, package_count: int | None
) -> None:
    changes: dict[str, object] = {
        "status": Repository.Status.VALID,
        # Only shown to users; the checksum, not the revision, tells whether anything changed.
        "revision": (repomd.revision or "")[:REVISION_LIMIT],
        "repomd_checksum": repomd.checksum,
        "last_introspection_time": started,
        "last_introspection_success_time": started,
        "last_introspection_error": "",
        "failed_introspections_count": 0,
    }
    if package_count is not None:
        changes.update(package_count=package_count, last_introspection_update_time=started)
    Repository.objects.filter(uuid=repository_uuid).update(**changes)


def _record_failure(repository_uuid: uuid.UUID, error: RepositoryError, *, started: datetime) -> None:
    unreachable = isinstance(error, UNREACHABLE) or (
        isinstance(error, HTTPStatusError) and not isinstance(error, HTTPNotFound)
    )
    Repository.objects.filter(uuid=repository_uuid).update(
        status=Repository.Status.UNAVAILABLE if unreachable else Repository.Status.INVALID,
        last_introspection_time=started,
        last_introspection_error=str(error)[:ERROR_LIMIT],
        failed_introspections_count=F("failed_introspections_count") + 1,
    )
