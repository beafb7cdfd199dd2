"""Compression of metadata files: told by their first bytes, undone within a size limit.

The decompressed size is capped while decompressing (a few kilobytes of gzip can stand for
gigabytes), so a decompression bomb costs at most the limit in disk and its time in CPU.
"""

import bz2
import gzip
import lzma
import zlib
from collections.abc import Callable
from contextlib import closing
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, Protocol

import zstandard

from repositories.conf import format_size, repositories
from repositories.exceptions import DecompressionBomb, MalformedMetadata, UnsupportedCompression
from repositories.yum.stopping import StopCheck, never, stop_if_asked

CHUNK_SIZE = 1024 * 1024


class Compression(StrEnum):
    """How a metadata file is compressed; the value is its usual file name suffix."""

    GZ = "gz"
    BZ2 = "bz2"
    XZ = "xz"
    ZSTD = "zst"
    NONE = ""


_MAGIC = (
    (b"\x1f\x8b", Compression.GZ),
    (b"BZh", Compression.BZ2),
    (b"\xfd7zXZ\x00", Compression.XZ),
    (b"\x28\xb5\x2f\xfd", Compression.ZSTD),
)
# Formats some repositories use that are not read here, to name them in the error.
_UNSUPPORTED_MAGIC = (
    (b"\x00ZCK1", "zchunk"),
    (b"\x5d\x00\x00", "lzma"),
    (b"\x1f\x9d", "compress (.Z)"),
    (b"PK\x03\x04", "zip"),
)
_HEAD_SIZE = 512


def detect_compression(path: Path, *, shown_as: str) -> Compression:
    """The compression of the file at `path`, from its first bytes; plain text is NONE.

    `shown_as` names the file in errors (`repodata/…-primary.xml.zck of https://…/`).
    """
    with path.open("rb") as file:
        head = file.read(_HEAD_SIZE)
    for magic, compression in _MAGIC:
        if head.startswith(magic):
            return compression
    for magic, name in _UNSUPPORTED_MAGIC:
        if head.startswith(magic):
            raise UnsupportedCompression(
                f"{shown_as} is compressed with {name}, which is not supported (use gz, bz2, xz or zst)"
            )
    if b"\x00" in head or not _is_text(head):
        raise UnsupportedCompression(f"{shown_as} is neither text nor compressed with gz, bz2, xz or zst")
    return Compression.NONE


def decompress(
    source: Path,
    destination: Path,
    compression: Compression,
    *,
    limit: int,
    shown_as: str,
    should_stop: StopCheck = never,
) -> int:
    """Write the decompressed content of `source` (compressed, not NONE) to `destination`;
    return its size in bytes.

    Raises DecompressionBomb as soon as more than `limit` bytes come out, MalformedMetadata
    when the data is not valid for its compression, and Stopped once `should_stop` (asked
    every CHUNK_SIZE) answers true; `destination` is then removed.
    """
    too_large = f"{shown_as} decompresses to more than {format_size(limit)} (REPOSITORIES_MAX_DECOMPRESSED_SIZE)"
    written = 0
    try:
        with source.open("rb") as raw, closing(_READERS[compression](raw)) as reader, destination.open("wb") as out:
            while chunk := reader.read(CHUNK_SIZE):
                written += len(chunk)
                if written > limit:
                    raise DecompressionBomb(too_large)
                out.write(chunk)
                stop_if_asked(should_stop, f"decompression of {shown_as}")
    except (OSError, EOFError, zlib.error, lzma.LZMAError, zstandard.ZstdError) as exc:
        destination.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is not None:
            raise  # a local file could not be opened or written: not the metadata's fault
        raise MalformedMetadata(f"{shown_as} is not valid {compression} data: {exc}") from None
    except BaseException:
        destination.unlink(missing_ok=True)
        raise
    return written


def decompressed(path: Path, *, shown_as: str, should_stop: StopCheck = never) -> Path:
    """The file at `path` decompressed beside it (within REPOSITORIES_MAX_DECOMPRESSED_SIZE),
    or `path` itself when it is not compressed."""
    compression = detect_compression(path, shown_as=shown_as)
    if compression is Compression.NONE:
        return path
    plain = path.with_name(path.name.removesuffix(f".{compression}"))
    if plain == path:
        plain = path.with_name(f"{path.name}.decompressed")
    limit = repositories().max_decompressed_size
    decompress(path, plain, compression, limit=limit, shown_as=shown_as, should_stop=should_stop)
    return plain


class _Reader(Protocol):
    def read(self, size: int, /) -> bytes: ...

    def close(self) -> None: ...


# Each read of these returns at most the size it asks for, however much the input expands.
_READERS: dict[Compression, Callable[[BinaryIO], _Reader]] = {
    Compression.GZ: lambda raw: gzip.GzipFile(fileobj=raw, mode="rb"),
    Compression.BZ2: lambda raw: bz2.BZ2File(raw, mode="rb"),
    Compression.XZ: lambda raw: lzma.LZMAFile(raw, mode="rb"),
    Compression.ZSTD: lambda raw: zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True),
}


def _is_text(head: bytes) -> bool:
    """Whether the first bytes of a file read as UTF-8 (a multi-byte character may be cut at the end)."""
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3 and exc.reason == "unexpected end of data"
    return True
