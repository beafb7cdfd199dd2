"""Snapshots served as yum repositories: `<CONTENT_URL_PREFIX><org id>/<snapshot uuid>/...`.

The metadata (repodata/repomd.xml, its signature repomd.xml.asc where the repository has one,
and every file repomd.xml lists) is served byte for byte from the
snapshot storage, with the headers a yum or dnf client and a cache use (Content-Length, ETag,
Last-Modified, Range, conditional requests). Any other path, a package, is redirected to the
upstream repository: the metadata is frozen, the packages are fetched on demand.
"""

import re
import uuid
from pathlib import PurePosixPath
from posixpath import normpath
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotModified,
    HttpResponseRedirect,
)
from django.http.response import HttpResponseBase
from django.utils.http import http_date, parse_http_date_safe
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from repositories import selectors
from repositories.storage import open_blob

CONTENT_TYPES = {
    ".xml": "application/xml",
    ".gz": "application/gzip",
    ".xz": "application/x-xz",
    ".bz2": "application/x-bzip2",
    ".zst": "application/zstd",
    ".zck": "application/zchunk",
    ".sqlite": "application/vnd.sqlite3",
    ".yaml": "application/yaml",
    ".asc": "application/pgp-signature",  # repomd.xml.asc
}
REPODATA = "repodata"
# One range, in bytes (the unit is case-insensitive); several ranges are answered whole.
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$", re.IGNORECASE)
# A range that the file cannot satisfy: answered 416.
UNSATISFIABLE = (-1, -1)


# The view changes nothing and answers only GET and HEAD: a POST gets its 405, not the CSRF
# middleware's 403.
@csrf_exempt
@require_safe
def serve(request: HttpRequest, org_id: str, snapshot_uuid: uuid.UUID, path: str) -> HttpResponseBase:
    clean = normpath(path)
    # Only a file's own path: no `..`, no `.` or empty segment, no trailing slash, no directory.
    if clean != path or clean.startswith(("..", "/")) or clean in (".", REPODATA):
        raise Http404("no such file")
    file = selectors.snapshot_file(org_id=org_id, snapshot_uuid=snapshot_uuid, path=clean)
    if file is None:
        snapshot = selectors.snapshot_get(org_id=org_id, snapshot_uuid=snapshot_uuid)
        if snapshot is None or snapshot.repository_configuration.deleted_at is not None:
            raise Http404("no such snapshot")
        if clean.startswith(f"{REPODATA}/"):
            raise Http404("no such file")
        return HttpResponseRedirect(_upstream(snapshot.repository_configuration.repository.url, clean))
    if file.snapshot.repository_configuration.deleted_at is not None:
        raise Http404("no such snapshot")
    etag = f'"{file.blob.sha256}"'
    modified = int(file.snapshot.created_at.timestamp())
    headers = {
        "ETag": etag,
        "Last-Modified": http_date(modified),
        "Accept-Ranges": "bytes",
        "Cache-Control": "public, max-age=31536000, immutable",  # a snapshot never changes
    }
    if _not_modified(request, etag, modified):
        return HttpResponseNotModified(headers=headers)
    size = file.blob.size
    # Range is defined for GET only (RFC 9110 14.2): a HEAD describes the whole file.
    byte_range = _requested_range(request, size, etag, modified) if request.method == "GET" else None
    if byte_range == UNSATISFIABLE:
        return HttpResponse(status=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    start, end = byte_range if byte_range is not None else (0, size - 1)
    headers["Content-Type"] = CONTENT_TYPES.get(PurePosixPath(clean).suffix, "application/octet-stream")
    headers["Content-Length"] = str(end - start + 1)
    status = 200
    if byte_range is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    if request.method == "HEAD":
        return HttpResponse(status=status, headers=headers)  # the storage is not even opened
    body = open_blob(file.blob.sha256, start=start, length=end - start + 1)
    response = FileResponse(body, status=status)
    if "Content-Disposition" in response:
        del response["Content-Disposition"]  # named after the blob: of no use, and not HEAD's
    for name, value in headers.items():
        response[name] = value
    return response


def _upstream(repository_url: str, path: str) -> str:
    """The upstream URL of a path of the repository. The path is quoted, so that a `?`, a `#`
    or a `scheme:` in it stays part of the path; the repository's credentials are left out,
    never handed to whoever asks."""
    parts = urlsplit(urljoin(repository_url, quote(path)))
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, ""))


def _not_modified(request: HttpRequest, etag: str, modified: int) -> bool:
    """RFC 9110 13.2.2: If-None-Match (weak comparison) decides when present, else
    If-Modified-Since."""
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
        return "*" in tags or etag in tags
    since = parse_http_date_safe(request.headers.get("If-Modified-Since", ""))
    return since is not None and modified <= since


def _requested_range(request: HttpRequest, size: int, etag: str, modified: int) -> tuple[int, int] | None:
    """The single byte range asked for, UNSATISFIABLE, or None for the whole file: no Range,
    an invalid one or several (a server may ignore those), or an If-Range that does not match."""
    header = request.headers.get("Range")
    if header is None or not _if_range_matches(request.headers.get("If-Range"), etag, modified):
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            return UNSATISFIABLE
        return max(0, size - length), size - 1
    start = int(first)
    if last and int(last) < start:
        return None  # an invalid range: ignored
    if start >= size:
        return UNSATISFIABLE
    return start, min(int(last), size - 1) if last else size - 1


def _if_range_matches(if_range: str | None, etag: str, modified: int) -> bool:
    """If-Range (RFC 9110 13.1.5): an entity tag, compared strongly, or the exact
    Last-Modified date."""
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith(('"', "W/")):
        return value == etag
    return parse_http_date_safe(value) == modified
