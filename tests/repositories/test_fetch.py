"""repositories.yum.fetch against real HTTP servers on 127.0.0.1."""

import base64
import socket
import ssl
import time

import pytest

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
    TLSError,
    TooManyRedirects,
    TruncatedDownload,
    UnsupportedScheme,
)
from repositories.yum.fetch import download
from tests.repositories.support import exactly
from tests.repositories.yum_server import content, drip, redirect, silence, status, stream

REPOMD = "repodata/repomd.xml"


@pytest.fixture
def served(yum_server, repository):
    """A server on the small repository."""
    return yum_server()


@pytest.fixture
def destination(work_dir):
    return work_dir / "download"


def test_a_file_is_streamed_to_disk_and_the_host_header_keeps_the_name(served, repository, destination):
    size = download(served.url(REPOMD, host="localhost"), destination)

    assert destination.read_bytes() == (repository / REPOMD).read_bytes()
    assert size == destination.stat().st_size
    [(path, headers)] = served.requests
    assert path == f"/{REPOMD}"
    assert headers["Host"] == f"localhost:{served.port}"
    assert headers["User-Agent"] == "content-sources"
    assert headers["Accept-Encoding"] == "identity"


def test_credentials_are_sent_as_basic_auth_and_never_shown(served, destination):
    url = served.url("missing").replace("http://", "http://mirror-user:s3cr%40t@")

    with pytest.raises(HTTPNotFound, match=exactly(f"HTTP 404 File not found from {served.url('missing')}")):
        download(url, destination)

    [(_, headers)] = served.requests
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"mirror-user:s3cr@t").decode()


@pytest.mark.parametrize(
    ("code", "reason"), [(403, "Forbidden"), (500, "Internal Server Error"), (503, "Service Unavailable")]
)
def test_an_http_error_names_the_status_and_the_url(served, destination, code, reason):
    served.on("/broken", status(code))

    with pytest.raises(HTTPStatusError, match=exactly(f"HTTP {code} {reason} from {served.url('broken')}")):
        download(served.url("broken"), destination)
    assert not destination.exists()


def test_redirects_are_followed(served, repository, destination):
    served.on("/old/repomd.xml", redirect("/moved/repomd.xml", code=301))
    served.on("/moved/repomd.xml", redirect(f"/{REPOMD}", code=307))

    download(served.url("old/repomd.xml"), destination)

    assert destination.read_bytes() == (repository / REPOMD).read_bytes()
    assert [path for path, _ in served.requests] == ["/old/repomd.xml", "/moved/repomd.xml", f"/{REPOMD}"]


def test_credentials_follow_a_redirect_to_the_same_origin_only(yum_server, served, repository, destination):
    other = yum_server()
    served.on("/here", redirect("/there"))
    served.on("/there", redirect(other.url(REPOMD)))
    url = served.url("here").replace("http://", "http://user:pw@")

    download(url, destination)

    assert [headers.get("Authorization") for _, headers in served.requests] == ["Basic dXNlcjpwdw=="] * 2
    [(_, headers)] = other.requests
    assert "Authorization" not in headers


def test_a_redirect_loop_is_an_error(served, destination):
    served.on("/a", redirect("/b"))
    served.on("/b", redirect("/a"))

    with pytest.raises(
        RedirectLoop, match=exactly(f"redirect loop: {served.url('b')} redirects back to {served.url('a')}")
    ):
        download(served.url("a"), destination)


def test_too_many_redirects_is_an_error(served, settings, destination):
    settings.REPOSITORIES = {**settings.REPOSITORIES, "MAX_REDIRECTS": 3}
    for hop in range(5):
        served.on(f"/r{hop}", redirect(f"/r{hop + 1}"))

    with pytest.raises(TooManyRedirects, match=exactly(f"more than 3 redirects from {served.url('r0')}")):
        download(served.url("r0"), destination)
    assert len(served.requests) == 4


def test_a_redirect_to_a_link_local_address_is_refused_even_where_private_urls_are_allowed(served, destination):
    served.on("/latest", redirect("http://169.254.169.254/latest/meta-data/"))

    message = (
        "refused http://169.254.169.254/latest/meta-data/: 169.254.169.254 is a link-local address; "
        "only public addresses are fetched"
    )
    with pytest.raises(PrivateAddressRefused, match=exactly(message)):
        download(served.url("latest"), destination)


def test_a_redirect_to_another_scheme_is_refused(served, destination):
    served.on("/ftp", redirect("ftp://mirror.example.com/repo/"))

    message = "unsupported URL scheme 'ftp' in ftp://mirror.example.com/repo/: only http and https are fetched"
    with pytest.raises(UnsupportedScheme, match=exactly(message)):
        download(served.url("ftp"), destination)


def test_a_private_address_is_refused_before_any_connection_unless_allowed(served, settings, destination):
    settings.REPOSITORIES = {**settings.REPOSITORIES, "ALLOW_PRIVATE_URLS": False}

    message = f"refused {served.url(REPOMD)}: 127.0.0.1 is a loopback address; only public addresses are fetched"
    with pytest.raises(PrivateAddressRefused, match=exactly(message)):
        download(served.url(REPOMD), destination)
    # A name is checked once resolved (to 127.0.0.1 or ::1, in the resolver's order).
    with pytest.raises(PrivateAddressRefused, match=r"localhost resolves to (127\.0\.0\.1|::1), a loopback address"):
        download(served.url(REPOMD, host="localhost"), destination)
    with pytest.raises(PrivateAddressRefused, match="10.1.2.3 is a private address"):
        download("http://10.1.2.3/repo/", destination)
    assert served.requests == []


@pytest.mark.parametrize(
    ("url", "error", "message"),
    [
        (
            "ftp://mirror.example.com/repo/",
            UnsupportedScheme,
            "unsupported URL scheme 'ftp' in ftp://mirror.example.com/repo/: only http and https are fetched",
        ),
        (
            "file:///etc/passwd",
            UnsupportedScheme,
            "unsupported URL scheme 'file' in file:///etc/passwd: only http and https are fetched",
        ),
        (
            "mirror.example.com/repo/",
            InvalidURL,
            "mirror.example.com/repo/ is not a valid URL: it has no scheme (start it with https:// or http://)",
        ),
        ("http:///repo/", InvalidURL, "http:///repo/ is not a valid URL: it has no host"),
        ("http://u:p@host:99999/", InvalidURL, "http://host:99999/ is not a valid URL: Port out of range 0-65535"),
        ("http://[::1/repo/", InvalidURL, "http://[::1/repo/ is not a valid URL: Invalid IPv6 URL"),
    ],
)
def test_a_url_that_cannot_be_fetched_says_why(destination, url, error, message):
    with pytest.raises(error, match=exactly(message)):
        download(url, destination)


def test_an_unknown_host_is_a_dns_failure(destination):
    # .invalid never resolves (RFC 6761).
    message = r"^cannot resolve host no-such-host\.invalid \(http://no-such-host\.invalid/repo/\): \S.*$"
    with pytest.raises(HostNotFound, match=message):
        download("http://no-such-host.invalid/repo/", destination)


def test_a_closed_port_is_an_unreachable_host(allow_private_urls, destination):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/repo/"

    with pytest.raises(
        HostUnreachable, match=exactly(f"cannot connect to 127.0.0.1 port {port} ({url}): Connection refused")
    ):
        download(url, destination)


def test_a_server_that_does_not_answer_times_out(served, settings, destination):
    settings.REPOSITORIES = {**settings.REPOSITORIES, "FETCH_TIMEOUT": 0.3}
    served.on("/silent", silence())

    with pytest.raises(FetchTimeout, match=exactly(f"timed out after 0.3s waiting for {served.url('silent')}")):
        download(served.url("silent"), destination)


def test_a_server_that_trickles_bytes_forever_times_out_at_the_download_deadline(served, settings, destination):
    """Each byte comes well within the fetch timeout: only the download's deadline ends it."""
    settings.REPOSITORIES = {**settings.REPOSITORIES, "FETCH_TIMEOUT": 5.0, "DOWNLOAD_TIMEOUT": 1.0}
    served.on("/trickle", drip(b"x" * 100_000, 0.2))
    started = time.monotonic()

    message = f"download of {served.url('trickle')} took longer than 1s in all (REPOSITORIES_DOWNLOAD_TIMEOUT)"
    with pytest.raises(FetchTimeout, match=exactly(message)):
        download(served.url("trickle"), destination)
    assert 1.0 <= time.monotonic() - started < 2.0
    assert not destination.exists()


def test_a_body_shorter_than_announced_is_a_truncated_download(served, destination):
    served.on("/short", content(b"x" * 100, length=1000))

    with pytest.raises(
        TruncatedDownload, match=exactly(f"download of {served.url('short')} broke off after 100 of 1000 bytes")
    ):
        download(served.url("short"), destination)
    assert not destination.exists()


@pytest.mark.parametrize("announce", [True, False], ids=["by-content-length", "while-streaming"])
def test_a_body_over_the_download_limit_is_refused(served, settings, destination, announce):
    settings.REPOSITORIES = {**settings.REPOSITORIES, "MAX_DOWNLOAD_SIZE": 1024 * 1024}
    served.on("/huge", stream(64 * 1024 * 1024, announce=announce))

    message = f"{served.url('huge')} is larger than the download limit of 1 MiB (REPOSITORIES_MAX_DOWNLOAD_SIZE)"
    with pytest.raises(DownloadTooLarge, match=exactly(message)):
        download(served.url("huge"), destination)
    assert not destination.exists()


class StopOnceRequested:
    """A `should_stop` that answers true once the server has the request, and remembers when."""

    def __init__(self, server):
        self.server = server
        self.asked_at: float | None = None

    def __call__(self) -> bool:
        if self.asked_at is None and self.server.requests:
            self.asked_at = time.monotonic()
        return self.asked_at is not None


@pytest.mark.parametrize("behaviour", [drip(b"x" * 10_000, 0.05), silence()], ids=["slow-body", "no-answer"])
def test_a_download_stops_within_a_second_of_being_asked_to_on_a_slow_server(served, destination, behaviour):
    served.on("/slow", behaviour)
    should_stop = StopOnceRequested(served)

    with pytest.raises(FetchStopped, match=exactly(f"download of {served.url('slow')} stopped on request")):
        download(served.url("slow"), destination, should_stop=should_stop)
    # The server would take 500 s, and the fetch timeout is 30 s.
    assert should_stop.asked_at is not None
    assert time.monotonic() - should_stop.asked_at < 1.0
    assert not destination.exists()


class TestTLS:
    """The connection goes to the resolved address; SNI and the certificate check use the name."""

    @pytest.fixture
    def tls_server(self, yum_server, repository, localhost_certificate):
        """An HTTPS server with the certificate for localhost; `server_names` lists the SNI it got."""
        certificate, key = localhost_certificate
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certificate, key)
        server_names: list[str | None] = []
        context.sni_callback = lambda sock, name, context: server_names.append(name)
        server = yum_server(tls=context)
        server.server_names = server_names
        return server

    def test_a_name_is_verified_against_the_certificate_while_its_address_is_dialled(
        self, tls_server, repository, destination, localhost_certificate, monkeypatch
    ):
        monkeypatch.setenv("SSL_CERT_FILE", str(localhost_certificate[0]))  # trust the test certificate

        download(tls_server.url(REPOMD, host="localhost"), destination)

        assert destination.read_bytes() == (repository / REPOMD).read_bytes()
        assert tls_server.server_names == ["localhost"]

    def test_a_certificate_for_another_name_is_refused(
        self, tls_server, destination, localhost_certificate, monkeypatch
    ):
        monkeypatch.setenv("SSL_CERT_FILE", str(localhost_certificate[0]))
        url = tls_server.url(REPOMD)

        message = f"TLS certificate of 127.0.0.1 is not valid ({url}): hostname '127.0.0.1' doesn't match 'localhost'"
        with pytest.raises(TLSError, match=exactly(message)):
            download(url, destination)

    def test_a_redirect_from_https_to_http_is_refused(
        self, yum_server, tls_server, destination, localhost_certificate, monkeypatch
    ):
        monkeypatch.setenv("SSL_CERT_FILE", str(localhost_certificate[0]))
        plain = yum_server()
        tls_server.on("/downgrade", redirect(plain.url(REPOMD, host="localhost")))
        url = tls_server.url("downgrade", host="localhost")

        message = f"refused the redirect from {url} to {plain.url(REPOMD, host='localhost')}: it leaves https for http"
        with pytest.raises(RedirectRefused, match=exactly(message)):
            download(url, destination)
        assert tls_server.requests and plain.requests == []

    def test_an_untrusted_certificate_is_refused(self, tls_server, destination):
        url = tls_server.url(REPOMD, host="localhost")

        with pytest.raises(
            TLSError, match=exactly(f"TLS certificate of localhost is not valid ({url}): self-signed certificate")
        ):
            download(url, destination)


def test_a_redirect_that_carries_credentials_of_its_own_is_refused(yum_server, served, destination):
    other = yum_server()
    target = other.url(REPOMD).replace("http://", "http://someone:their-secret@")
    served.on("/moved", redirect(target))

    message = (
        f"refused the redirect from {served.url('moved')} to {other.url(REPOMD)}: it carries credentials of its own"
    )
    with pytest.raises(RedirectRefused, match=exactly(message)):
        download(served.url("moved"), destination)
    assert other.requests == []


def test_a_path_is_sent_percent_encoded_with_its_dot_segments_resolved_and_its_query(served, repository, destination):
    (repository / "with space").mkdir()
    (repository / "with space" / "file").write_bytes(b"spaced")

    download(served.url("a/./b/../../with space/file?token=a b&x=%7e"), destination)

    assert destination.read_bytes() == b"spaced"
    assert served.targets == ["/with%20space/file?token=a%20b&x=~"]


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("::ffff:169.254.169.254", "link-local"),  # IPv4-mapped
        ("2002:a9fe:a9fe::1", "link-local"),  # 6to4 of 169.254.169.254
        ("2001:0:4136:e378:8000:63bf:5601:5601", "link-local"),  # Teredo, its client 169.254.169.254
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
    ],
)
def test_an_ipv6_address_that_embeds_a_refused_ipv4_one_is_refused_even_where_private_urls_are_allowed(
    allow_private_urls, destination, address, kind
):
    url = f"http://[{address}]/repo/"

    message = f"refused {url}: {address} is a {kind} address; only public addresses are fetched"
    with pytest.raises(PrivateAddressRefused, match=exactly(message)):
        download(url, destination)


@pytest.mark.parametrize(
    ("host", "kind"),
    [("::ffff:127.0.0.1", "loopback"), ("2002:7f00:1::", "loopback"), ("2002:a00:1::", "private")],
)
def test_an_ipv6_address_that_embeds_a_private_ipv4_one_is_refused_unless_allowed(
    served, settings, destination, host, kind
):
    settings.REPOSITORIES = {**settings.REPOSITORIES, "ALLOW_PRIVATE_URLS": False}
    url = f"http://[{host}]:{served.port}/{REPOMD}"

    message = f"refused {url}: {host} is a {kind} address; only public addresses are fetched"
    with pytest.raises(PrivateAddressRefused, match=exactly(message)):
        download(url, destination)
    assert served.requests == []
