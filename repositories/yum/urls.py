"""The parts of a URL as they are sent and compared (RFC 3986): percent-encoded where they must
be, dot segments resolved, and a repository's files located under its URL with its query kept."""

import re
from urllib.parse import quote, urlsplit, urlunsplit

# The characters a path keeps as they are (RFC 3986 3.3); a query keeps `?` and `/` too.
_PATH_SAFE = "/:@!$&'()*+,;="
_QUERY_SAFE = f"{_PATH_SAFE}?"
_ESCAPE = re.compile(r"(%[0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def requoted_path(path: str) -> str:
    """The path percent-encoded (a space as %20, other text as UTF-8), its escapes kept (in
    upper case, unreserved characters unescaped), and its dot segments resolved."""
    return remove_dot_segments(_requoted(path, _PATH_SAFE))


def requoted_query(query: str) -> str:
    return _requoted(query, _QUERY_SAFE)


def _requoted(text: str, safe: str) -> str:
    pieces = _ESCAPE.split(text)  # text, escape, text, ...
    for index, piece in enumerate(pieces):
        if index % 2:
            character = chr(int(piece[1:], 16))
            pieces[index] = character if character in _UNRESERVED else piece.upper()
        else:
            pieces[index] = quote(piece, safe=safe)  # a `%` that starts no escape becomes %25
    return "".join(pieces)


def remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4: `/a/./b/../c` is `/a/c`; `..` never climbs above the root."""
    output: list[str] = []
    while path:
        if path.startswith(("../", "./")):
            path = path.partition("/")[2]
        elif path.startswith("/./") or path == "/.":
            path = "/" + path[3:]
        elif path.startswith("/../") or path == "/..":
            path = "/" + path[4:]
            if output:
                output.pop()
        elif path in (".", ".."):
            path = ""
        else:
            end = path.find("/", 1)
            end = len(path) if end < 0 else end
            output.append(path[:end])
            path = path[end:]
    return "".join(output)


def file_url(repository_url: str, location: str = "") -> str:
    """The URL of a file of the repository at `repository_url`, as dnf finds it: `location`
    (from repomd.xml, say) appended to the repository's path, the repository's query kept; the
    repository's own URL, ending with `/`, for no location. A location is always a path under
    the repository's host, even one that looks like a URL of its own (`//elsewhere/...`)."""
    parts = urlsplit(repository_url)
    root = parts.path if parts.path.endswith("/") else f"{parts.path}/"
    path = requoted_path(root + location.lstrip("/"))
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
