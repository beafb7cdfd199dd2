"""What a repository configuration accepts, normalised: bad input is an InvalidInput naming
its field, in one line the user can act on."""

from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

from repositories.exceptions import InvalidInput
from repositories.yum.urls import requoted_path, requoted_query

NAME_LIMIT = 255
URL_LIMIT = 2048
ARCHES = ("any", "x86_64", "aarch64", "ppc64le", "s390x", "noarch", "i686")
DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_url(url: object) -> str:
    """The URL configurations are matched by: http or https, scheme and host in lower case, no
    default port, no fragment, path and query percent-encoded (a space is %20), the path's dot
    segments resolved (`/a/./b/../c` is `/a/c`) and ending with `/` (the repository's root),
    and the query kept."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidInput("url is required", field="url")
    text = url.strip()
    if len(text) > URL_LIMIT:
        raise InvalidInput(f"url is longer than {URL_LIMIT} characters", field="url")
    if not _printable(text):
        raise InvalidInput(f"url is not printable text: {_shown(text)}", field="url")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"url is not a valid URL: {exc}", field="url") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidInput(f"url must start with http:// or https://, not {text[:40]!r}", field="url")
    if not parts.hostname:
        raise InvalidInput("url has no host", field="url")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    credentials = parts.netloc.rpartition("@")[0]
    netloc = (f"{credentials}@" if credentials else "") + host
    if port is not None and port != DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    path = requoted_path(parts.path or "/")
    if not path.endswith("/"):
        path = f"{path}/"
    return urlunsplit((scheme, netloc, path, requoted_query(parts.query), ""))


def clean_org(org_id: object, *, field: str = "org_id") -> str:
    """An organisation or account id: short printable text without `/` (it is a segment of the
    URLs that snapshots are served at)."""
    if not isinstance(org_id, str) or not org_id or len(org_id) > NAME_LIMIT or not _printable(org_id) or "/" in org_id:
        message = f"{field} must be 1 to {NAME_LIMIT} printable characters other than /: {org_id!r}"
        raise InvalidInput(message, field=field)
    return org_id


def clean_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("name is required", field="name")
    name = " ".join(name.split())
    if len(name) > NAME_LIMIT:
        raise InvalidInput(f"name is longer than {NAME_LIMIT} characters", field="name")
    if not _printable(name):
        raise InvalidInput(f"name is not printable text: {_shown(name)}", field="name")
    return name


def clean_versions(versions: Iterable[object]) -> list[str]:
    cleaned = []
    for version in versions:
        if not isinstance(version, str) or not version.strip() or len(version) > 32 or not _printable(version):
            raise InvalidInput(
                f"distribution_versions has an invalid version: {version!r}", field="distribution_versions"
            )
        cleaned.append(version.strip())
    return sorted(set(cleaned))


def clean_arch(arch: object) -> str:
    if arch not in ARCHES:
        raise InvalidInput(
            f"distribution_arch must be one of {', '.join(ARCHES)}, not {arch!r}", field="distribution_arch"
        )
    return str(arch)


def clean_gpg_key(key: object) -> str:
    if not isinstance(key, str) or not _printable(key.replace("\n", "").replace("\r", "")):
        raise InvalidInput("gpg_key must be text", field="gpg_key")
    if len(key) > 65536:
        raise InvalidInput("gpg_key is longer than 65536 characters", field="gpg_key")
    return key.strip()


def _shown(text: str) -> str:
    """The text as a message quotes it: escaped, and cut short."""
    return repr(text if len(text) <= 60 else f"{text[:60]}...")


def is_printable(text: str) -> bool:
    """Whether the text can be stored and looked up: valid UTF-8, no control characters."""
    return _printable(text)


def _printable(text: str) -> bool:
    """Storable and showable on one line: valid UTF-8, no control characters (NUL included)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return all(character.isprintable() for character in text)
