"""Snapshots served as yum repositories: `<CONTENT_URL_PREFIX><org id>/<snapshot uuid>/...`.

The metadata (repodata/repomd.xml and every file it lists) is served byte for byte from the
snapshot storage, with the headers a yum or dnf client and a cache use (Content-Length, ETag,
Last-Modified, Range, conditional requests). Any other path, a package, is redirected to the
upstream repository: the metadata is frozen, the packages are fetched on demand.
"""

import re
import uuid
from collections.abc import Iterator
from pathlib import PurePosixPath
from posixpath import normpath
from urllib.parse import urljoin

from django.core.files import File
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotModified,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.utils.http import http_date, parse_http_date_safe
from django.views.decorators.http import require_safe

from repositories import selectors
from repositories.storage import blob_name, snapshot_storage

CHUNK = 64 * 1024
CONTENT_TYPES = {
    ".xml": "application/xml",
    ".gz": "application/gzip",
    ".xz": "application/x-xz",
    ".bz2": "application/x-bzip2",
    ".zst": "application/zstd",
    ".zck": "application/zchunk",
    ".sqlite": "application/vnd.sqlite3",
    ".yaml": "application/yaml",
}
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
# A range that starts past the end of the file: answered 416.
UNSATISFIABLE = (-1, -1)


@require_safe
def serve(request: HttpRequest, org_id: str, snapshot_uuid: uuid.UUID, path: str) -> HttpResponseBase:
    clean = normpath(path)
    if path == "" or clean.startswith(("..", "/")) or clean != path.rstrip("/"):
        raise Http404("no such file")
    file = selectors.snapshot_file(org_id=org_id, snapshot_uuid=snapshot_uuid, path=clean)
    if file is None:
        snapshot = selectors.snapshot_get(org_id=org_id, snapshot_uuid=snapshot_uuid)
        if snapshot is None or snapshot.repository_configuration.deleted_at is not None:
            raise Http404("no such snapshot")
        if clean.startswith("repodata/"):
            raise Http404("no such file")
        return HttpResponseRedirect(urljoin(snapshot.repository_configuration.repository.url, clean))
    if file.snapshot.repository_configuration.deleted_at is not None:
        raise Http404("no such snapshot")
    etag = f'"{file.blob.sha256}"'
    modified = file.snapshot.created_at.timestamp()
    headers = {
        "ETag": etag,
        "Last-Modified": http_date(modified),
        "Accept-Ranges": "bytes",
        "Cache-Control": "public, max-age=31536000, immutable",  # a snapshot never changes
    }
    if _not_modified(request, etag, modified):
        return HttpResponseNotModified(headers=headers)
    size = file.blob.size
    byte_range = _requested_range(request, size, etag)
    if byte_range == UNSATISFIABLE:
        return HttpResponse(status=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    content_type = CONTENT_TYPES.get(PurePosixPath(clean).suffix, "application/octet-stream")
    stored = snapshot_storage().open(blob_name(file.blob.sha256), "rb")
    response: HttpResponseBase
    if byte_range is None:
        response = FileResponse(stored, content_type=content_type, filename=PurePosixPath(clean).name)
        response["Content-Length"] = str(size)
    else:
        start, end = byte_range
        response = StreamingHttpResponse(_read(stored, start, end), status=206, content_type=content_type)
        response["Content-Length"] = str(end - start + 1)
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    for name, value in headers.items():
        response[name] = value
    return response


def _not_modified(request: HttpRequest, etag: str, modified: float) -> bool:
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        return if_none_match.strip() == "*" or etag in [tag.strip() for tag in if_none_match.split(",")]
    since = parse_http_date_safe(request.headers.get("If-Modified-Since", ""))
    return since is not None and int(modified) <= since


def _requested_range(request: HttpRequest, size: int, etag: str) -> tuple[int, int] | None:
    """The single byte range asked for, UNSATISFIABLE, or None for the whole file (no Range,
    several ranges, or an If-Range that no longer matches)."""
    header = request.headers.get("Range")
    if header is None:
        return None
    if_range = request.headers.get("If-Range")
    if if_range is not None and if_range.strip() != etag:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None  # several ranges, or another unit: the whole file is a valid answer
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        length = int(last)
        if length == 0:
            return UNSATISFIABLE
        return max(0, size - length), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        return UNSATISFIABLE
    return start, end


def _read(stored: File[bytes], start: int, end: int) -> Iterator[bytes]:
    try:
        stored.seek(start)
        left = end - start + 1
        while left > 0:
            chunk = stored.read(min(CHUNK, left))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk
    finally:
        stored.close()
