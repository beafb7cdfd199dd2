"""`introspect`: read a repository's metadata and record its packages and state.

Not requeueable, as in the original: a failed introspection is counted on the repository and
tried again by the next one (the nightly run, or a user's). A repository whose repomd.xml is
unchanged since its last success is not parsed again, unless the payload says `force`.
"""

import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from repositories.exceptions import (
    FetchStopped,
    FetchTimeout,
    HostNotFound,
    HostUnreachable,
    HTTPNotFound,
    HTTPStatusError,
    RepositoryError,
    TLSError,
    TruncatedDownload,
)
from repositories.models import ERROR_LIMIT, Repository
from repositories.services import INTROSPECT
from repositories.yum import YumRepository
from repositories.yum.packages import Package
from repositories.yum.repomd import Repomd
from tasks.context import TaskContext
from tasks.registry import handler

# How often (in packages) the handler looks for a cancellation while it stores packages.
CHECK_EVERY = 1000
# Errors of reaching the repository, rather than of what it serves.
UNREACHABLE = (HostNotFound, HostUnreachable, TLSError, FetchTimeout, TruncatedDownload)


@handler(INTROSPECT, cancellable=True, failures=(RepositoryError,))
def introspect(context: TaskContext) -> None:
    repository = Repository.objects.filter(uuid=context.payload["repository_uuid"]).first()
    if repository is None:
        context.logger.info("repository gone, nothing to introspect")
        return
    started = timezone.now()
    with tempfile.TemporaryDirectory(prefix="introspect-") as scratch:
        yum = YumRepository(repository.url, Path(scratch), should_stop=lambda: context.stop_requested)
        try:
            repomd = yum.repomd()
            unchanged = repomd.checksum == repository.repomd_checksum and repository.status == Repository.Status.VALID
            if unchanged and not context.payload.get("force"):
                _record_success(repository.uuid, repomd, started=started, package_count=None)
                context.logger.info("repository unchanged url=%s", yum.shown_url)
                return
            count = _store_packages(repository.uuid, yum.packages(), context)
        except FetchStopped:
            context.raise_if_cancelled()
            raise
        except RepositoryError as exc:
            _record_failure(repository.uuid, exc, started=started)
            raise
    _record_success(repository.uuid, repomd, started=started, package_count=count)
    context.logger.info("repository introspected url=%s packages=%d", yum.shown_url, count)


def _store_packages(repository_uuid: uuid.UUID, packages: Iterator[Package], context: TaskContext) -> int:
    """Make the repository's packages exactly those listed, in one transaction: a cancel or a
    failure part way leaves the previous set. The packages stream through COPY into a
    temporary table, so memory stays that of one package."""
    with transaction.atomic(), connection.cursor() as cursor:
        # One introspection of a repository writes at a time.
        Repository.objects.select_for_update().filter(uuid=repository_uuid).exists()
        cursor.execute(
            "CREATE TEMPORARY TABLE introspected (name text, arch text, version text, release text, epoch int,"
            " checksum_type text, checksum text, summary text) ON COMMIT DROP"
        )
        with cursor.copy("COPY introspected FROM STDIN") as copy:
            for position, package in enumerate(packages, start=1):
                if position % CHECK_EVERY == 0:
                    context.raise_if_cancelled()
                copy.write_row(_row(package))
        context.raise_if_cancelled()
        cursor.execute(
            "INSERT INTO packages (name, arch, version, release, epoch, checksum_type, checksum, summary)"
            " SELECT DISTINCT ON (checksum_type, checksum) name, arch, version, release, epoch, checksum_type,"
            " checksum, summary FROM introspected ORDER BY checksum_type, checksum"
            " ON CONFLICT (checksum_type, checksum) DO NOTHING"
        )
        cursor.execute(
            "DELETE FROM repositories_packages rp WHERE rp.repository_id = %s AND NOT EXISTS ("
            " SELECT FROM introspected i JOIN packages p USING (checksum_type, checksum) WHERE p.id = rp.package_id)",
            [repository_uuid],
        )
        cursor.execute(
            "INSERT INTO repositories_packages (repository_id, package_id)"
            " SELECT DISTINCT %s::uuid, p.id FROM introspected i JOIN packages p USING (checksum_type, checksum)"
            " ON CONFLICT DO NOTHING",
            [repository_uuid],
        )
        cursor.execute("SELECT count(*) FROM repositories_packages WHERE repository_id = %s", [repository_uuid])
        return int(cursor.fetchone()[0])


def _row(package: Package) -> tuple[object, ...]:
    """A package as the temporary table takes it; PostgreSQL text holds no NUL."""
    text = (package.name, package.arch, package.version, package.release)
    clean = [value.replace("\x00", "") for value in text]
    summary = package.summary.replace("\x00", "")
    return (*clean, package.epoch, package.checksum_type, package.checksum, summary)


def _record_success(repository_uuid: uuid.UUID, repomd: Repomd, *, started: object, package_count: int | None) -> None:
    changes: dict[str, object] = {
        "status": Repository.Status.VALID,
        "revision": repomd.revision or "",
        "repomd_checksum": repomd.checksum,
        "last_introspection_time": started,
        "last_introspection_success_time": started,
        "last_introspection_error": "",
        "failed_introspections_count": 0,
    }
    if package_count is not None:
        changes.update(package_count=package_count, last_introspection_update_time=started)
    Repository.objects.filter(uuid=repository_uuid).update(**changes)


def _record_failure(repository_uuid: uuid.UUID, error: RepositoryError, *, started: object) -> None:
    unreachable = isinstance(error, UNREACHABLE) or (
        isinstance(error, HTTPStatusError) and not isinstance(error, HTTPNotFound)
    )
    Repository.objects.filter(uuid=repository_uuid).update(
        status=Repository.Status.UNAVAILABLE if unreachable else Repository.Status.INVALID,
        last_introspection_time=started,
        last_introspection_error=str(error)[:ERROR_LIMIT],
        failed_introspections_count=F("failed_introspections_count") + 1,
    )
