"""Download over http and https, from public addresses only, to a file, within the app's limits.

Each hop (the URL, then every redirect) is resolved once, each of its addresses checked, and
the connection made to a checked address, while the Host header, the TLS SNI and the
certificate check use the host name: a DNS answer that changes between the check and the
connection (rebinding) cannot move a download to another address. urllib3 is used because its
connections take the address to connect to apart from the name to verify.
"""

import ipaddress
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from http.client import HTTPException
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote, urljoin, urlsplit

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import (
    ConnectTimeoutError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.response import HTTPResponse
from urllib3.util import make_headers
from urllib3.util.ssl_match_hostname import CertificateError

from repositories.conf import RepositoriesSettings, format_size, repositories
from repositories.exceptions import (
    DownloadTooLarge,
    FetchStopped,
    FetchTimeout,
    HostNotFound,
    HostUnreachable,
    HTTPNotFound,
    HTTPStatusError,
    InvalidURL,
    PrivateAddressRefused,
    RedirectLoop,
    RedirectRefused,
    RepositoryError,
    TLSError,
    TooManyRedirects,
    TruncatedDownload,
    UnsupportedScheme,
)
from repositories.yum.stopping import StopCheck, never
from repositories.yum.urls import requoted_path, requoted_query

logger = logging.getLogger(__name__)

CHUNK_SIZE = 64 * 1024
# How often a download asks `should_stop` while it waits on the server.
STOP_POLL_INTERVAL = 0.1
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Never fetched, whatever REPOSITORIES_ALLOW_PRIVATE_URLS says: no repository is served from
# them, and link-local holds the cloud metadata services that SSRF goes after.
ALWAYS_REFUSED = frozenset({"unspecified", "link-local", "multicast", "reserved"})

# NAT64's well-known prefix (RFC 6052): its addresses end with the IPv4 address they reach.
NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")

_CREDENTIALS = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#]*@")


def redact(url: str) -> str:
    """The URL without its user name and password, for messages and logs."""
    return _CREDENTIALS.sub(r"\1", url)


def download(url: str, destination: Path, *, should_stop: StopCheck = never) -> int:
    """Download `url` to `destination`, following redirects; return the number of bytes written.

    `should_stop` is asked between chunks, and every 0.1 s from a thread of the download's own
    while it waits on the server (so it must be thread-safe, as `Event.is_set` is): once it
    answers true the download ends with FetchStopped. The same thread ends a download that
    takes longer than REPOSITORIES_DOWNLOAD_TIMEOUT in all (redirects included), however
    steadily its bytes come, with FetchTimeout. Any failure is a RepositoryError, and
    `destination` is then removed.
    """
    conf = repositories()
    try:
        with _StopWatch(should_stop, deadline=time.monotonic() + conf.download_timeout) as watch:
            return _follow(_Target.parse(url), destination, conf, watch)
    except BaseException:
        destination.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class _Target:
    """One URL to request: where to connect, and what to ask for."""

    url: str  # without credentials
    scheme: str
    host: str  # ASCII, without brackets
    port: int
    netloc: str  # host[:port], for the Host header
    path: str  # path and query
    authorization: str | None

    @classmethod
    def parse(cls, url: str) -> "_Target":
        shown = redact(url)
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise InvalidURL(f"{shown} is not a valid URL: {exc}") from None
        scheme = parts.scheme.lower()
        if not scheme:
            raise InvalidURL(f"{shown} is not a valid URL: it has no scheme (start it with https:// or http://)")
        if scheme not in ("http", "https"):
            raise UnsupportedScheme(f"unsupported URL scheme {scheme!r} in {shown}: only http and https are fetched")
        if not parts.hostname:
            raise InvalidURL(f"{shown} is not a valid URL: it has no host")
        try:
            host = parts.hostname.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidURL(f"{shown} is not a valid URL: its host is not a valid name") from None
        authorization = None
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            authorization = make_headers(basic_auth=credentials)["authorization"]
        return cls(
            url=shown,
            scheme=scheme,
            host=host,
            port=port or (443 if scheme == "https" else 80),
            netloc=(f"[{host}]" if ":" in host else host) + (f":{port}" if port else ""),
            path=requoted_path(parts.path or "/") + (f"?{requoted_query(parts.query)}" if parts.query else ""),
            authorization=authorization,
        )

    def redirected(self, location: str) -> "_Target":
        """The target a Location header points to. Credentials go along to the same origin only;
        a redirect that carries credentials of its own, or that leaves https for http, is
        refused."""
        target = _Target.parse(urljoin(self.url, location))
        if target.authorization is not None:
            raise RedirectRefused(
                f"refused the redirect from {self.url} to {target.url}: it carries credentials of its own"
            )
        if self.scheme == "https" and target.scheme != "https":
            raise RedirectRefused(f"refused the redirect from {self.url} to {target.url}: it leaves https for http")
        if (target.scheme, target.host, target.port) == (self.scheme, self.host, self.port):
            target = replace(target, authorization=self.authorization)
        return target


def _follow(target: _Target, destination: Path, conf: RepositoriesSettings, watch: "_StopWatch") -> int:
    first = target
    visited = {target.url}
    for _ in range(conf.max_redirects + 1):
        watch.raise_if_stopped(target.url)
        with _request(target, conf, watch) as response:
            location = response.headers.get("Location")
            if response.status in REDIRECT_STATUSES and location:
                following = target.redirected(location)
                if following.url in visited:
                    raise RedirectLoop(f"redirect loop: {target.url} redirects back to {following.url}")
                logger.debug("redirect from=%s to=%s", target.url, following.url)
                visited.add(following.url)
                target = following
                continue
            if response.status != 200:
                reason = f" {response.reason}" if response.reason else ""
                error = HTTPNotFound if response.status == 404 else HTTPStatusError
                raise error(f"HTTP {response.status}{reason} from {target.url}")
            return _save(response, target, destination, conf, watch)
    raise TooManyRedirects(f"more than {conf.max_redirects} redirects from {first.url}")


@contextmanager
def _request(target: _Target, conf: RepositoriesSettings, watch: "_StopWatch") -> Iterator[HTTPResponse]:
    """Connect to `target` and send the request; yields the answer with its headers read."""
    headers = {"Host": target.netloc, "User-Agent": conf.user_agent, "Accept-Encoding": "identity"}
    if target.authorization:
        headers["Authorization"] = target.authorization
    connection = None
    try:
        try:
            connection = _connect(target, conf, watch)
            connection.request("GET", target.path, headers=headers, preload_content=False, decode_content=False)
            response = connection.getresponse()
        except RepositoryError:
            raise
        except Exception as exc:
            watch.raise_if_stopped(target.url, cause=exc)
            raise _translated(exc, target, conf) from exc
        yield response
    finally:
        if connection is not None:
            connection.close()


def _connect(target: _Target, conf: RepositoriesSettings, watch: "_StopWatch") -> HTTPConnection:
    """A connection to the first checked address of the host that accepts one."""
    failure: Exception | None = None
    for address in _checked_addresses(target, conf.allow_private_urls):
        connection: HTTPConnection
        if target.scheme == "https":
            connection = HTTPSConnection(
                address,
                target.port,
                timeout=conf.fetch_timeout,
                server_hostname=target.host,
                assert_hostname=target.host,
            )
        else:
            connection = HTTPConnection(address, target.port, timeout=conf.fetch_timeout)
        try:
            connection.connect()
        except (NewConnectionError, ConnectTimeoutError) as exc:
            connection.close()
            watch.raise_if_stopped(target.url, cause=exc)
            failure = exc
            continue
        except BaseException:
            connection.close()
            raise
        watch.attach(connection.sock)
        return connection
    assert failure is not None  # a host resolves to one address at least
    raise failure


def _checked_addresses(target: _Target, allow_private: bool) -> list[str]:
    """The host's addresses, in the resolver's order; refused if any is not allowed."""
    try:
        answers = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise HostNotFound(f"cannot resolve host {target.host} ({target.url}): {exc.strerror}") from None
    addresses = list(dict.fromkeys(str(answer[4][0]) for answer in answers))
    for address in addresses:
        kind = address_kind(ipaddress.ip_address(address))
        if kind is None or (allow_private and kind not in ALWAYS_REFUSED):
            continue
        article = "an" if kind[0] in "aeiou" else "a"
        where = f"{address} is" if address == target.host else f"{target.host} resolves to {address},"
        raise PrivateAddressRefused(
            f"refused {target.url}: {where} {article} {kind} address; only public addresses are fetched"
        )
    return addresses


def address_kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """What kind of non-public address this is, or None for a public one. An IPv6 address that
    embeds an IPv4 one (IPv4-mapped, 6to4, Teredo, NAT64) is judged by both: the embedded
    address is where its packets end up."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _own_kind(address.ipv4_mapped)  # the IPv4 address itself, written as IPv6
    kinds = [_own_kind(candidate) for candidate in (*_embedded(address), address)]
    refused = [kind for kind in kinds if kind is not None]
    return next((kind for kind in refused if kind in ALWAYS_REFUSED), refused[0] if refused else None)


def _own_kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    kinds = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
    )
    for kind, matches in kinds:
        if matches:
            return kind
    return None if address.is_global else "non-public"


def _embedded(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries: 6to4 (2002::/16), Teredo (its server and
    client) and NAT64's well-known prefix (64:ff9b::/96)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    embedded = [address.sixtofour] if address.sixtofour is not None else []
    if address.teredo is not None:
        embedded.extend(address.teredo)
    if address in NAT64_PREFIX:
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return embedded


def _save(
    response: HTTPResponse, target: _Target, destination: Path, conf: RepositoriesSettings, watch: "_StopWatch"
) -> int:
    """Stream the body to `destination`, within the download size limit."""
    limit = conf.max_download_size
    too_large = (
        f"{target.url} is larger than the download limit of {format_size(limit)} (REPOSITORIES_MAX_DOWNLOAD_SIZE)"
    )
    if response.length_remaining is not None and response.length_remaining > limit:
        raise DownloadTooLarge(too_large)
    written = 0
    try:
        with destination.open("wb") as file:
            for chunk in response.stream(CHUNK_SIZE, decode_content=False):
                written += len(chunk)
                if written > limit:
                    raise DownloadTooLarge(too_large)
                file.write(chunk)
                watch.raise_if_stopped(target.url)
    except (ProtocolError, ReadTimeoutError, SSLError) as exc:
        watch.raise_if_stopped(target.url, cause=exc)
        if isinstance(exc, ReadTimeoutError):
            raise FetchTimeout(f"timed out after {conf.fetch_timeout:g}s waiting for {target.url}") from exc
        expected = f" of {written + response.length_remaining}" if response.length_remaining else ""
        raise TruncatedDownload(f"download of {target.url} broke off after {written}{expected} bytes") from exc
    # The stop watch shuts the socket down, which a body without a length takes for its end.
    watch.raise_if_stopped(target.url)
    return written


def _translated(exc: Exception, target: _Target, conf: RepositoriesSettings) -> Exception:
    """The RepositoryError for a failure to connect to `target` or to read its answer's headers."""
    # urllib3's NewConnectionError is a ConnectTimeoutError too: it is told apart first.
    if isinstance(exc, NewConnectionError):
        return HostUnreachable(f"cannot connect to {target.host} port {target.port} ({target.url}): {_reason(exc)}")
    if isinstance(exc, ConnectTimeoutError | ReadTimeoutError | TimeoutError):
        return FetchTimeout(f"timed out after {conf.fetch_timeout:g}s waiting for {target.url}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TLSError(f"TLS certificate of {target.host} is not valid ({target.url}): {exc.verify_message}")
    if isinstance(exc, CertificateError):
        return TLSError(f"TLS certificate of {target.host} is not valid ({target.url}): {exc}")
    if isinstance(exc, ssl.SSLError | SSLError):
        return TLSError(f"TLS failed with {target.host} ({target.url}): {_reason(exc)}")
    if isinstance(exc, OSError | HTTPException):
        return HostUnreachable(f"no answer from {target.host} port {target.port} ({target.url}): {_reason(exc)}")
    return exc


def _reason(exc: BaseException) -> str:
    """The innermost, most specific cause of a network error, in words."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class _StopWatch:
    """Asks `should_stop` every STOP_POLL_INTERVAL from a thread of its own, and once it answers
    true, or the download's deadline (a `time.monotonic()` value) has passed, shuts the
    download's socket down: a read blocked on a slow server returns at once, where it would
    otherwise wait up to the fetch timeout."""

    def __init__(self, should_stop: StopCheck, *, deadline: float):
        self._should_stop = should_stop
        self._deadline = deadline
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self.stopped = False
        self.expired = False
        self._thread = threading.Thread(target=self._watch, name="yum-download-stop-watch", daemon=True)

    def __enter__(self) -> "_StopWatch":
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._done.set()
        self._thread.join()

    def attach(self, sock: socket.socket) -> None:
        """Watch over this socket from now on. The socket, not its connection: http.client lets
        go of the connection's socket as soon as an answer's headers say it will close."""
        with self._lock:
            self._socket = sock
            stopped = self.stopped or self.expired
        if stopped:  # while connecting, with no socket to shut down yet
            _shut_down(sock)

    def raise_if_stopped(self, url: str, cause: BaseException | None = None) -> None:
        if self.stopped or self._should_stop():
            self.stopped = True
            raise FetchStopped(f"download of {url} stopped on request") from cause
        if self.expired or time.monotonic() > self._deadline:
            self.expired = True
            limit = repositories().download_timeout
            raise FetchTimeout(
                f"download of {url} took longer than {limit:g}s in all (REPOSITORIES_DOWNLOAD_TIMEOUT)"
            ) from cause

    def _watch(self) -> None:
        while not self._done.wait(STOP_POLL_INTERVAL):
            stopped, expired = self._should_stop(), time.monotonic() > self._deadline
            if stopped or expired:
                with self._lock:
                    self.stopped, self.expired = stopped, expired
                    sock = self._socket
                if sock is not None:
                    _shut_down(sock)
                return


def _shut_down(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # closed meanwhile by the download itself
