"""Checksums of metadata files, by the names repomd.xml and primary.xml give their types."""

import hashlib
from pathlib import Path

from repositories.exceptions import ChecksumMismatch, UnsupportedChecksum

CHUNK_SIZE = 1024 * 1024
# Old repositories (createrepo before 0.9) write `sha` for SHA-1.
_ALGORITHMS = {
    "md5": "md5",
    "sha": "sha1",
    "sha1": "sha1",
    "sha224": "sha224",
    "sha256": "sha256",
    "sha384": "sha384",
    "sha512": "sha512",
}


def file_checksum(path: Path, checksum_type: str, *, shown_as: str) -> str:
    """The hex digest of the file at `path`; `shown_as` names the file in errors."""
    algorithm = _ALGORITHMS.get(checksum_type.lower())
    if algorithm is None:
        known = ", ".join(sorted(_ALGORITHMS))
        raise UnsupportedChecksum(f"{shown_as} has a checksum of unsupported type {checksum_type!r} (known: {known})")
    digest = hashlib.new(algorithm)
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path: Path, checksum_type: str, expected: str, *, shown_as: str) -> None:
    """Raise ChecksumMismatch unless the file at `path` has the checksum `expected`."""
    actual = file_checksum(path, checksum_type, shown_as=shown_as)
    if actual != expected.strip().lower():
        raise ChecksumMismatch(f"{checksum_type} checksum mismatch for {shown_as}: expected {expected}, got {actual}")
