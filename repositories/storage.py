"""Snapshot metadata files, stored once by the sha256 of their bytes in the `snapshots` storage.

A `Blob` row exists only while its file does: a file is written under its row's lock, before
the row commits, and deleted under the row's lock, before its deletion commits. A snapshot
references blobs through foreign keys, so a blob in use is never deleted; a blob that nothing
references is deleted by the snapshot run that stored it when that run fails or is cancelled,
and by the deletion of the last snapshot that used it.
"""

import logging
from collections.abc import Iterable
from pathlib import Path

from django.core.files import File
from django.core.files.storage import Storage, storages
from django.db import IntegrityError, connection, transaction

logger = logging.getLogger(__name__)

STORAGE = "snapshots"


def snapshot_storage() -> Storage:
    """The storage of the snapshots' files: settings.STORAGES["snapshots"]."""
    return storages[STORAGE]


def blob_name(sha256: str) -> str:
    """Where a blob lives in the storage: spread over 256 folders by its first two digits."""
    return f"sha256/{sha256[:2]}/{sha256}"


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


def release_blobs(sha256s: Iterable[str]) -> list[str]:
    """Delete the blobs that no snapshot references any more, rows and files; return those
    deleted. A blob still referenced (or newly referenced meanwhile) is kept."""
    storage = snapshot_storage()
    deleted = []
    for sha256 in sorted(set(sha256s)):
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                # Django's foreign keys are checked at commit; here the check must come before
                # the file is deleted.
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                cursor.execute("DELETE FROM snapshot_blobs WHERE sha256 = %s RETURNING sha256", [sha256])
                if cursor.fetchone() is None:
                    continue
                storage.delete(blob_name(sha256))
        except IntegrityError:
            continue  # a snapshot uses it
        deleted.append(sha256)
    if deleted:
        logger.info("stored files deleted count=%d", len(deleted))
    return deleted
