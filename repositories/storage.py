"""Snapshot metadata files, stored once by the sha256 of their bytes in the `snapshots` storage.

A `Blob` row exists only while its file does: a file is written under its row's lock, before
the row commits, and deleted under the row's lock, before its deletion commits. A snapshot
references blobs through foreign keys, so a blob in use is never deleted; a blob that nothing
references is deleted by the snapshot task that stored it when the task fails or is cancelled,
and by the deletion of the last snapshot that used it. A blob that a snapshot run found
stored may so be deleted before the run records its snapshot: the run holds its blobs while
it records, storing again any that went (`hold_blobs`).

What a killed worker leaves (blobs its run stored and no run of its task released, because
the task was then cancelled, or its configuration deleted; a file whose row never committed)
is found by `collect_garbage`.
"""

import io
import logging
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol, TypeGuard

from django.core.files import File
from django.core.files.storage import Storage, storages
from django.db import IntegrityError, connection, transaction
from django.db.backends.utils import CursorWrapper
from django.utils import timezone
from storages.utils import clean_name

from repositories.conf import repositories
from repositories.yum.stopping import StopCheck, never, stop_if_asked

if TYPE_CHECKING:
    from storages.backends.s3 import S3Storage

logger = logging.getLogger(__name__)

STORAGE = "snapshots"
# Where the blobs are, and how each is named.
BLOBS = "sha256"
_SHA256 = re.compile(r"[0-9a-f]{64}")
# How many unreferenced blobs collect_garbage reads at a time.
BATCH = 1000


def snapshot_storage() -> Storage:
    """The storage of the snapshots' files: settings.STORAGES["snapshots"]."""
    return storages[STORAGE]


def blob_name(sha256: str) -> str:
    """Where a blob lives in the storage: spread over 256 folders by its first two digits."""
    return f"{BLOBS}/{sha256[:2]}/{sha256}"


class Readable(Protocol):
    """What `open_blob` gives: bytes to read in chunks, and to close."""

    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


def open_blob(sha256: str, *, start: int = 0, length: int | None = None) -> Readable:
    """The blob's bytes from `start`, `length` of them (all that follow if None), to read in
    chunks: never the whole file at once, whatever its size.

    From an S3-compatible store, the object's body as the store sends it (a ranged GET):
    django-storages' own files download the whole object, into memory by default, before the
    first byte can be read. From any other storage, its file, from `start`."""
    storage = snapshot_storage()
    name = blob_name(sha256)
    if length == 0:
        return io.BytesIO(b"")
    if _is_s3(storage):
        request = {} if start == 0 and length is None else {"Range": f"bytes={start}-{_end(start, length)}"}
        body: Readable = storage.bucket.Object(storage._normalize_name(clean_name(name))).get(**request)["Body"]
        return body
    file = storage.open(name, "rb")
    file.seek(start)
    return file if length is None else _Slice(file, length)


def _is_s3(storage: Storage) -> TypeGuard["S3Storage"]:
    """Whether the storage is django-storages' S3 backend, without importing it (boto3 is
    ~25 MiB in every process, the workers' included): an instance of its class means that the
    module was loaded already, when the storage was made from the settings."""
    s3 = sys.modules.get("storages.backends.s3")
    return s3 is not None and isinstance(storage, s3.S3Storage)


def _end(start: int, length: int | None) -> str:
    return "" if length is None else str(start + length - 1)


class _Slice:
    """`length` bytes of an open file, from where it stands. Closing it closes the file."""

    def __init__(self, file: IO[bytes] | File[bytes], length: int):
        self._file = file
        self._left = length

    def read(self, size: int = -1, /) -> bytes:
        size = self._left if size < 0 else min(size, self._left)
        chunk = self._file.read(size) if size > 0 else b""
        self._left -= len(chunk)
        return chunk

    def close(self) -> None:
        self._file.close()


def store_blob(path: Path, *, sha256: str, size: int) -> bool:
    """Store the file at `path` as the blob `sha256`, unless it is stored already.

    Returns True when this call created the blob (and so owns its cleanup if the snapshot that
    stores it fails). Waits while another transaction stores or deletes the same blob.
    """
    storage = snapshot_storage()
    name = blob_name(sha256)
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO snapshot_blobs (sha256, size, stored_at) VALUES (%s, %s, now())"
                " ON CONFLICT DO NOTHING RETURNING sha256",
                [sha256, size],
            )
            created = cursor.fetchone() is not None
            if not created:
                cursor.execute("SELECT size FROM snapshot_blobs WHERE sha256 = %s FOR UPDATE", [sha256])
                if cursor.fetchone() is None:
                    continue  # deleted while we waited for it: store it anew
                # Found by a run that will reference it: young again, so collect_garbage keeps it.
                cursor.execute("UPDATE snapshot_blobs SET stored_at = now() WHERE sha256 = %s", [sha256])
            if created or not _stored(storage, name, size):
                # A file left by a store whose row did not commit, or one lost: write it again.
                if storage.exists(name):
                    storage.delete(name)
                with path.open("rb") as source:
                    saved = storage.save(name, File(source))
                if saved != name:
                    raise RuntimeError(f"the snapshot storage saved {name} as {saved}")
            return created


def _stored(storage: Storage, name: str, size: int) -> bool:
    return storage.exists(name) and storage.size(name) == size


def hold_blobs(files: Mapping[str, Path]) -> list[str]:
    """Within the caller's transaction, keep the blobs `files` names (sha256 to a local copy)
    until it ends: a deletion meanwhile waits, then finds them referenced by what the caller
    recorded. A blob deleted since the caller stored or found it is stored again from its
    copy; returns those."""
    if not connection.in_atomic_block:
        raise RuntimeError("hold_blobs holds blobs for the caller's transaction: call it inside one")
    stored_again = []
    # In one order, so that two callers that store the same blobs again never wait for each other.
    for sha256 in sorted(files):
        with connection.cursor() as cursor:
            cursor.execute("SELECT FROM snapshot_blobs WHERE sha256 = %s FOR KEY SHARE", [sha256])
            if cursor.fetchone() is not None:
                continue
        path = files[sha256]
        store_blob(path, sha256=sha256, size=path.stat().st_size)
        stored_again.append(sha256)
    if stored_again:
        logger.info("stored files deleted meanwhile stored again count=%d", len(stored_again))
    return stored_again


def release_blobs(sha256s: Iterable[str], *, stored_before: datetime | None = None) -> list[str]:
    """Delete the blobs that no snapshot references any more, rows and files; return those
    deleted. A blob still referenced (or newly referenced meanwhile) is kept, and so is one
    stored (or found stored) since `stored_before` when given. A file without a row (left by a
    store whose row never committed: a killed worker) is deleted too."""
    storage = snapshot_storage()
    deleted = []
    for sha256 in sorted(set(sha256s)):
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                # Django's foreign keys are checked at commit; here the check must come before
                # the file is deleted.
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                cursor.execute(
                    "DELETE FROM snapshot_blobs WHERE sha256 = %s AND (%s::timestamptz IS NULL OR stored_at < %s)"
                    " RETURNING sha256",
                    [sha256, stored_before, stored_before],
                )
                if cursor.fetchone() is None and not _claim_name(cursor, sha256):
                    continue
                storage.delete(blob_name(sha256))
        except IntegrityError:
            continue  # a snapshot uses it
        deleted.append(sha256)
    if deleted:
        logger.info("stored files deleted count=%d", len(deleted))
    return deleted


def _claim_name(cursor: CursorWrapper, sha256: str) -> bool:
    """For a blob without a row: whether a file is left under its name, now that a row of
    this transaction's own keeps every store of it away (the row goes with the transaction).
    False if the blob was stored meanwhile: it is its storer's."""
    cursor.execute(
        "INSERT INTO snapshot_blobs (sha256, size, stored_at) VALUES (%s, 0, now())"
        " ON CONFLICT DO NOTHING RETURNING sha256",
        [sha256],
    )
    if cursor.fetchone() is None:
        return False
    cursor.execute("DELETE FROM snapshot_blobs WHERE sha256 = %s", [sha256])
    return snapshot_storage().exists(blob_name(sha256))


def collect_garbage(*, should_stop: StopCheck = never) -> list[str]:
    """Delete the stored files that no snapshot references and that were last stored, or
    found stored by a snapshot run, more than REPOSITORIES_ORPHAN_FILE_AGE ago: blobs with a
    row, and files without one. Returns those deleted.

    The rule that keeps a concurrent snapshot's files: a run that stores a blob, or finds it
    stored, marks it young (`stored_at`, under the row's lock), and the age is far longer
    than a run takes to record what it stored; the deletion checks the age again under the
    row's lock, so a blob found meanwhile is kept. A file without a row is claimed with a row
    of the deletion's own (`_claim_name`), which a concurrent store of it waits for or wins.
    Were a blob deleted all the same, the run would store it again when it records
    (`hold_blobs`). Reads the database once per BATCH blobs and lists the storage's folders,
    asking `should_stop` (Stopped) before each.
    """
    cutoff = timezone.now() - timedelta(seconds=repositories().orphan_file_age)
    deleted = []
    for batch in _unreferenced(cutoff, should_stop):
        deleted += release_blobs(batch, stored_before=cutoff)
    for batch in _files_without_rows(cutoff, should_stop):
        deleted += release_blobs(batch, stored_before=cutoff)
    if deleted:
        logger.info("unreferenced stored files collected count=%d", len(deleted))
    return deleted


def _unreferenced(cutoff: datetime, should_stop: StopCheck) -> Iterator[list[str]]:
    """The blobs stored before `cutoff` that no snapshot references, BATCH at a time."""
    after = ""
    while True:
        stop_if_asked(should_stop, "garbage collection")
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT b.sha256 FROM snapshot_blobs b WHERE b.sha256 > %s AND b.stored_at < %s"
                " AND NOT EXISTS (SELECT FROM snapshot_files f WHERE f.blob_id = b.sha256)"
                " AND NOT EXISTS (SELECT FROM snapshots s WHERE s.repomd_id = b.sha256)"
                " ORDER BY b.sha256 LIMIT %s",
                [after, cutoff, BATCH],
            )
            batch = [row[0] for row in cursor.fetchall()]
        if not batch:
            return
        yield batch
        after = batch[-1]


def _files_without_rows(cutoff: datetime, should_stop: StopCheck) -> Iterator[list[str]]:
    """The stored blob files modified before `cutoff` that have no row, a folder at a time."""
    storage = snapshot_storage()
    try:
        folders, _ = storage.listdir(BLOBS)
    except FileNotFoundError:
        return  # nothing stored yet
    for folder in sorted(folders):
        stop_if_asked(should_stop, "garbage collection")
        _, names = storage.listdir(f"{BLOBS}/{folder}")
        names = [name for name in names if _SHA256.fullmatch(name) and name.startswith(folder)]
        with connection.cursor() as cursor:
            cursor.execute("SELECT sha256 FROM snapshot_blobs WHERE sha256 = ANY(%s)", [names])
            with_rows = {row[0] for row in cursor.fetchall()}
        old = [name for name in names if name not in with_rows and storage.get_modified_time(blob_name(name)) < cutoff]
        if old:
            yield old
