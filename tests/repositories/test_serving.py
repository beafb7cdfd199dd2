"""Snapshots served as yum repositories: taken by the real handlers from a repository served on
127.0.0.1, then read through Django's test client and over real HTTP from the app served on
127.0.0.1, by createrepo_c and by dnf."""

import hashlib
import http.client
import re
import subprocess
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import createrepo_c as cr
import pytest
from django.test import Client
from django.utils.http import http_date

from repositories import services
from repositories.models import RepositoryConfiguration, Snapshot
from tasks.models import Task
from tests.helpers import APT_LOCK_WAIT, ROOT, debian_command, wait_until
from tests.repositories.conftest import BASH, PACKAGES, TMUX
from tests.repositories.live_app import LiveApp
from tests.repositories.yum_builder import list_metadata

ORG = "acme"
REPOMD = "repodata/repomd.xml"
ENDED = [Task.Status.COMPLETED, Task.Status.FAILED, Task.Status.CANCELED]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes
    streamed: bool | None = None  # known through Django's test client only


class ThroughClient:
    """Requests through Django's test client: the URLconf, the middleware and the view."""

    name = "client"

    def __init__(self) -> None:
        self.client = Client()

    def request(self, method: str, path: str, headers: dict[str, str] | None = None) -> Answer:
        response = self.client.generic(method, path, headers=headers or {})
        try:
            body = b"".join(response.streaming_content) if response.streaming else response.content
        finally:
            response.close()
        return Answer(
            status=response.status_code,
            headers={name.lower(): value for name, value in response.headers.items()},
            body=body,
            streamed=response.streaming,
        )


class ThroughHTTP:
    """Requests over a real connection to the app served on 127.0.0.1 (paths sent as given)."""

    name = "http"

    def __init__(self, app: LiveApp) -> None:
        self.app = app

    def request(self, method: str, path: str, headers: dict[str, str] | None = None) -> Answer:
        connection = http.client.HTTPConnection("127.0.0.1", self.app.port, timeout=10)
        try:
            connection.request(method, path, headers=headers or {})
            response = connection.getresponse()
            body = response.read()
            return Answer(
                status=response.status,
                headers={name.lower(): value for name, value in response.getheaders()},
                body=body,
            )
        finally:
            connection.close()


@pytest.fixture
def snapshot_storage(settings, tmp_path) -> Path:
    """STORAGES["snapshots"] in a directory of the test's own."""
    location = tmp_path / "snapshots"
    settings.STORAGES = {
        **settings.STORAGES,
        "snapshots": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": location}},
    }
    return location


@pytest.fixture
def take_snapshot(snapshot_storage, start_pool) -> Callable[..., Snapshot]:
    """Take a snapshot through the real service and handlers: create a configuration with
    snapshots on, and wait for its introspect and snapshot tasks. The pool serves only those
    two types: a deleted configuration's snapshots stay until the test ends."""
    pools = []

    def take(url: str, *, name: str = "base", org_id: str = ORG) -> Snapshot:
        configuration = services.repository_configuration_create(org_id=org_id, name=name, url=url, snapshot=True)
        if not pools:
            pools.append(start_pool(workers=2, types=[services.INTROSPECT, services.SNAPSHOT]))
        task = wait_until(
            lambda: Task.objects.filter(id=configuration.last_snapshot_task_id, status__in=ENDED).first(),
            timeout=30,
            message="the snapshot task to end",
        )
        assert task.status == Task.Status.COMPLETED, task.error
        configuration = RepositoryConfiguration.objects.get(uuid=configuration.uuid)
        return Snapshot.objects.select_related("repository_configuration").get(uuid=configuration.last_snapshot_id)

    return take


@pytest.fixture
def live_app():
    """The project's app, served over HTTP on 127.0.0.1 for the test."""
    app = LiveApp().start()
    yield app
    app.stop()


@pytest.fixture
def transports(live_app) -> tuple[ThroughClient, ThroughHTTP]:
    """Each request of a test is made both ways: through Django's test client and over HTTP."""
    return ThroughClient(), ThroughHTTP(live_app)


@pytest.fixture
def served(repository, yum_server, take_snapshot):
    """The fixture repository, served, and a snapshot of it."""
    server = yum_server()
    return server, take_snapshot(server.url())


def listed_files(root: Path) -> list[str]:
    """The location of every file repomd.xml lists."""
    repomd = cr.Repomd()
    cr.xml_parse_repomd(str(root / REPOMD), repomd, None)
    return [record.location_href for record in repomd.records]


def content_path(snapshot: Snapshot, path: str = "", *, org_id: str | None = None) -> str:
    return f"/content/{org_id or snapshot.repository_configuration.org_id}/{snapshot.uuid}/{path}"


def primary_path(root: Path) -> str:
    [path] = [path for path in listed_files(root) if path.endswith("-primary.xml.gz")]
    return path


def test_repomd_and_every_file_it_lists_are_served_byte_for_byte_with_their_headers(
    repository, served, transports, snapshot_storage
):
    _, snapshot = served
    paths = [REPOMD, *listed_files(repository)]
    assert len(paths) == 8  # and primary, filelists, other, updateinfo, comps plain and gz, modules
    for path in paths:  # stored where the test's settings say, by content
        sha256 = hashlib.sha256((repository / path).read_bytes()).hexdigest()
        assert (snapshot_storage / "sha256" / sha256[:2] / sha256).is_file(), path

    for transport in transports:
        for path in paths:
            upstream = (repository / path).read_bytes()
            answer = transport.request("GET", content_path(snapshot, path))

            assert answer.status == 200, (transport.name, path)
            assert answer.body == upstream, (transport.name, path)
            headers = answer.headers
            assert headers["content-length"] == str(len(upstream))
            assert headers["etag"] == f'"{hashlib.sha256(upstream).hexdigest()}"'
            assert headers["last-modified"] == http_date(snapshot.created_at.timestamp())
            assert headers["content-type"] == ("application/xml" if path.endswith(".xml") else "application/gzip")
            assert headers["accept-ranges"] == "bytes"
            assert headers["cache-control"] == "public, max-age=31536000, immutable"
            assert "transfer-encoding" not in headers
            assert answer.streamed in (True, None)  # a file response: never read whole into memory

            head = transport.request("HEAD", content_path(snapshot, path))
            assert (head.status, head.body) == (200, b""), (transport.name, path)
            per_request = ("date", "x-rh-insights-request-id")  # each request's own
            assert {name: value for name, value in head.headers.items() if name not in per_request} == {
                name: value for name, value in headers.items() if name not in per_request
            }, (transport.name, path)


def test_one_byte_range_is_answered_206_with_its_content_range(repository, served, transports):
    _, snapshot = served
    path = content_path(snapshot, primary_path(repository))
    data = (repository / primary_path(repository)).read_bytes()
    size = len(data)
    etag = f'"{hashlib.sha256(data).hexdigest()}"'
    last_modified = http_date(snapshot.created_at.timestamp())
    earlier = http_date(snapshot.created_at.timestamp() - 3600)

    for transport in transports:

        def get(range: str, **headers: str) -> Answer:
            return transport.request("GET", path, headers={"Range": range, **headers})  # noqa: B023

        for asked, (start, end) in {
            "bytes=0-9": (0, 9),
            "bytes=10-": (10, size - 1),
            "bytes=-20": (size - 20, size - 1),  # a suffix: the last 20 bytes
            "bytes=5-99999999": (5, size - 1),
            "bytes=-99999999": (0, size - 1),
            f"bytes={size - 1}-{size - 1}": (size - 1, size - 1),
            "Bytes=0-0": (0, 0),
        }.items():
            answer = get(asked)
            assert answer.status == 206, (transport.name, asked)
            assert answer.body == data[start : end + 1], (transport.name, asked)
            assert answer.headers["content-range"] == f"bytes {start}-{end}/{size}", (transport.name, asked)
            assert answer.headers["content-length"] == str(end - start + 1), (transport.name, asked)
            assert answer.headers["etag"] == etag
            assert answer.headers["content-type"] == "application/gzip"
            assert answer.streamed in (True, None)

        for asked in (f"bytes={size}-", f"bytes={size + 100}-{size + 200}", "bytes=-0"):
            answer = get(asked)
            assert (answer.status, answer.body) == (416, b""), (transport.name, asked)
            assert answer.headers["content-range"] == f"bytes */{size}", (transport.name, asked)

        # Several ranges, an invalid one, another unit: ignored, the whole file is the answer.
        for asked in ("bytes=0-1,4-5", "bytes=9-5", "bytes=-", "items=0-5", "bytes=a-b"):
            answer = get(asked)
            assert (answer.status, answer.body) == (200, data), (transport.name, asked)
            assert "content-range" not in answer.headers

        # If-Range: the range while the client's copy is the file's, else the whole file.
        for current in (etag, last_modified):
            answer = get("bytes=0-9", **{"If-Range": current})
            assert (answer.status, answer.body) == (206, data[:10]), (transport.name, current)
        for stale in ('"0123abcd"', f"W/{etag}", earlier, "not a date"):
            answer = get("bytes=0-9", **{"If-Range": stale})
            assert (answer.status, answer.body) == (200, data), (transport.name, stale)

        # A HEAD describes the whole file.
        head = transport.request("HEAD", path, headers={"Range": "bytes=0-9"})
        assert (head.status, head.body, head.headers["content-length"]) == (200, b"", str(size)), transport.name


def test_an_empty_file_is_served_and_no_range_of_it_is_satisfiable(repository, yum_server, take_snapshot, transports):
    list_metadata(repository, "notes", b"", "notes.txt")  # listed, with its true (empty) checksum
    snapshot = take_snapshot(yum_server().url())
    path = content_path(snapshot, "repodata/notes.txt")

    for transport in transports:
        answer = transport.request("GET", path)
        assert (answer.status, answer.body, answer.headers["content-length"]) == (200, b"", "0"), transport.name
        assert answer.headers["content-type"] == "application/octet-stream"
        for asked in ("bytes=0-", "bytes=0-0", "bytes=-1"):
            answer = transport.request("GET", path, headers={"Range": asked})
            assert (answer.status, answer.headers["content-range"]) == (416, "bytes */0"), (transport.name, asked)


def test_a_client_that_has_the_file_is_answered_304(repository, served, transports):
    _, snapshot = served
    path = content_path(snapshot, REPOMD)
    data = (repository / REPOMD).read_bytes()
    etag = f'"{hashlib.sha256(data).hexdigest()}"'
    created = snapshot.created_at.timestamp()

    for transport in transports:
        for headers in (
            {"If-None-Match": etag},
            {"If-None-Match": f'"0123abcd", {etag}'},
            {"If-None-Match": f"W/{etag}"},  # If-None-Match compares weakly
            {"If-None-Match": "*"},
            {"If-Modified-Since": http_date(created)},
            {"If-Modified-Since": http_date(created + 3600)},
            {"If-None-Match": etag, "If-Modified-Since": http_date(created - 3600)},
        ):
            for method in ("GET", "HEAD"):
                answer = transport.request(method, path, headers=headers)
                assert (answer.status, answer.body) == (304, b""), (transport.name, method, headers)
                assert answer.headers["etag"] == etag
                assert answer.headers["last-modified"] == http_date(created)

        for headers in (
            {"If-None-Match": '"0123abcd"'},
            {"If-Modified-Since": http_date(created - 3600)},
            # If-None-Match decides when both are given.
            {"If-None-Match": '"0123abcd"', "If-Modified-Since": http_date(created + 3600)},
            {"If-Modified-Since": "not a date"},
        ):
            answer = transport.request("GET", path, headers=headers)
            assert (answer.status, answer.body) == (200, data), (transport.name, headers)


def test_a_package_path_redirects_to_the_upstream_repository_without_its_credentials(
    repository, served, yum_server, take_snapshot, transports
):
    server, snapshot = served
    rpm = repository / BASH.location_href
    rpm.parent.mkdir(parents=True)
    rpm.write_bytes(b"an RPM, or its stand-in")
    private = yum_server()
    private_snapshot = take_snapshot(private.url(host="alice:s3cret@127.0.0.1"), name="private")
    assert private_snapshot.repository_configuration.repository.url == private.url(host="alice:s3cret@127.0.0.1")

    for transport in transports:
        for method in ("GET", "HEAD"):
            answer = transport.request(method, content_path(snapshot, BASH.location_href))
            assert (answer.status, answer.headers["location"]) == (302, server.url(BASH.location_href)), method
            answer = transport.request(method, content_path(private_snapshot, TMUX.location_href))
            assert (answer.status, answer.headers["location"]) == (302, private.url(TMUX.location_href)), method

        # What the path holds stays part of the path on the upstream server.
        for asked, redirected in {
            "Packages/a%20b%23c%3F.rpm": "Packages/a%20b%23c%3F.rpm",
            "Packages/%C3%A9t%C3%A9.rpm": "Packages/%C3%A9t%C3%A9.rpm",
            "https:evil.example/x.rpm": "https%3Aevil.example/x.rpm",
            "Packages/x.rpm?query=1": "Packages/x.rpm",
        }.items():
            answer = transport.request("GET", content_path(snapshot, asked))
            assert (answer.status, answer.headers["location"]) == (302, server.url(redirected)), asked

    # A client that follows the redirect gets the upstream's file.
    with urllib.request.urlopen(transports[1].app.url(content_path(snapshot, BASH.location_href)), timeout=10) as rpm:
        assert rpm.read() == b"an RPM, or its stand-in"


def test_what_is_not_a_file_of_a_live_snapshot_of_the_organisation_is_not_found(repository, served, transports):
    _, snapshot = served
    other = uuid.uuid4()
    paths = (
        content_path(snapshot, REPOMD, org_id="other-org"),
        content_path(snapshot, BASH.location_href, org_id="other-org"),
        f"/content/{ORG}/{other}/{REPOMD}",
        f"/content/{ORG}/{other}/{BASH.location_href}",
        f"/content/{ORG}/not-a-uuid/{REPOMD}",
        content_path(snapshot, "repodata/nothing.xml"),
        content_path(snapshot, "repodata/primary.xml.gz"),
        content_path(snapshot, "repodata/"),
        content_path(snapshot, "repodata"),
        content_path(snapshot, ""),
        content_path(snapshot, "."),
        content_path(snapshot, f"{REPOMD}/"),
        # Traversal and paths not in their normal form, plain and percent-encoded.
        content_path(snapshot, f"../{snapshot.uuid}/{REPOMD}"),
        content_path(snapshot, f"../../{ORG}/{snapshot.uuid}/{REPOMD}", org_id="other-org"),
        content_path(snapshot, f"%2e%2e/{snapshot.uuid}/{REPOMD}"),
        content_path(snapshot, f"repodata/../{REPOMD}"),
        content_path(snapshot, f"repodata/..%2f{REPOMD}"),
        content_path(snapshot, "repodata/./repomd.xml"),
        content_path(snapshot, "repodata//repomd.xml"),
        content_path(snapshot, "Packages/../../../etc/passwd"),
    )
    for transport in transports:
        assert transport.request("GET", content_path(snapshot, REPOMD)).status == 200
        for path in paths:
            for method in ("GET", "HEAD"):
                assert transport.request(method, path).status == 404, (transport.name, method, path)


def test_the_snapshots_of_a_deleted_configuration_are_not_found(repository, served, transports):
    _, snapshot = served
    for transport in transports:
        assert transport.request("GET", content_path(snapshot, REPOMD)).status == 200
        assert transport.request("GET", content_path(snapshot, BASH.location_href)).status == 302

    services.repository_configuration_delete(configuration=snapshot.repository_configuration)

    assert Snapshot.objects.filter(uuid=snapshot.uuid).exists()  # its delete task is still to run
    for transport in transports:
        for path in (REPOMD, primary_path(repository), BASH.location_href):
            for method in ("GET", "HEAD"):
                answer = transport.request(method, content_path(snapshot, path))
                assert answer.status == 404, (transport.name, method, path)


def test_only_get_and_head_are_allowed(repository, served, transports):
    _, snapshot = served
    for transport in transports:
        for path in (REPOMD, BASH.location_href):
            for method in ("POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
                answer = transport.request(method, content_path(snapshot, path))
                assert answer.status == 405, (transport.name, method, path)
                assert answer.headers["allow"] == "GET, HEAD"


def load_packages(root: Path) -> set[tuple[str, str, str, str, str, str]]:
    """The packages of the repository at `root`, as createrepo_c loads it through its repomd.xml."""
    metadata = cr.Metadata()
    metadata.locate_and_load_xml(str(root))
    packages = (metadata.get(key) for key in metadata.keys())
    return {(p.name, p.epoch, p.version, p.release, p.arch, p.pkgId) for p in packages}


def download(url: str, destination: Path) -> bytes:
    destination.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=10) as answer:
        data: bytes = answer.read()
    destination.write_bytes(data)
    return data


def test_createrepo_c_reads_the_served_repository_as_the_upstream_one(repository, served, live_app, tmp_path):
    _, snapshot = served
    copy = tmp_path / "downloaded"
    download(live_app.url(content_path(snapshot, REPOMD)), copy / REPOMD)
    repomd = cr.Repomd()
    cr.xml_parse_repomd(str(copy / REPOMD), repomd, None)
    for record in repomd.records:
        data = download(live_app.url(content_path(snapshot, record.location_href)), copy / record.location_href)
        assert (record.checksum_type, hashlib.sha256(data).hexdigest()) == ("sha256", record.checksum)

    served_packages = load_packages(copy)

    assert served_packages == load_packages(repository)
    assert {name for name, *_ in served_packages} == {package.name for package in PACKAGES}


@pytest.fixture(scope="session")
def dnf() -> str:
    """The dnf command, installed with apt-get when it is missing and this user may; else the
    test is skipped, saying why."""
    return debian_command("dnf", "dnf")


def run_dnf(dnf: str, directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run dnf in a throw-away configuration under `directory`: its own dnf.conf, install root,
    repository folder, cache and logs; no system repository is read, nothing is installed."""
    for name in ("root", "repos.d", "cache", "log"):
        (directory / name).mkdir(parents=True, exist_ok=True)
    config = directory / "dnf.conf"
    config.write_text("[main]\ngpgcheck=0\nrepo_gpgcheck=0\nskip_if_unavailable=0\n")
    command = [
        dnf,
        f"--config={config}",
        f"--installroot={directory / 'root'}",
        f"--setopt=reposdir={directory / 'repos.d'}",
        f"--setopt=cachedir={directory / 'cache'}",
        f"--setopt=logdir={directory / 'log'}",
        "--setopt=module_platform_id=platform:el9",
        "--releasever=9",
        "--nogpgcheck",
        "--quiet",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


NEVRA = "--queryformat=%{name}-%{epoch}:%{version}-%{release}.%{arch}"


def documented_repo_file() -> tuple[str, str]:
    """The `.repo` file of docs/repositories.md, and the id of the repository it defines."""
    [text] = re.findall(r"```ini\n(.*?)```", (ROOT / "docs" / "repositories.md").read_text(), re.DOTALL)
    [repo_id] = re.findall(r"^\[([^]]+)\]$", text, re.MULTILINE)
    return text, repo_id


@pytest.mark.timeout(2 * APT_LOCK_WAIT + 1200)  # installing dnf may take minutes
def test_dnf_lists_the_packages_of_a_snapshot(dnf, repository, served, live_app, tmp_path):
    _, snapshot = served
    url = live_app.url(content_path(snapshot))
    expected = sorted(package.nevra for package in PACKAGES)

    by_path = run_dnf(
        dnf, tmp_path / "by-path", f"--repofrompath=snapshot,{url}", "--disablerepo=*", "--enablerepo=snapshot",
        "repoquery", NEVRA,
    )  # fmt: skip

    assert by_path.returncode == 0, by_path.stderr
    assert sorted(by_path.stdout.split()) == expected
    [cached] = (tmp_path / "by-path" / "cache").glob("snapshot-*/repodata")
    for file in cached.iterdir():  # what dnf downloaded is the upstream's, byte for byte
        assert file.read_bytes() == (repository / "repodata" / file.name).read_bytes(), file.name

    # The .repo file that docs/repositories.md shows, with this snapshot's URL.
    text, repo_id = documented_repo_file()
    repo_file = re.sub(r"^baseurl=.*$", f"baseurl={url}", text, flags=re.MULTILINE)
    (tmp_path / "by-file" / "repos.d").mkdir(parents=True)
    (tmp_path / "by-file" / "repos.d" / f"{repo_id}.repo").write_text(repo_file)

    by_file = run_dnf(dnf, tmp_path / "by-file", "--disablerepo=*", f"--enablerepo={repo_id}", "repoquery", NEVRA)

    assert by_file.returncode == 0, by_file.stderr
    assert sorted(by_file.stdout.split()) == expected


# A detached signature as `gpg --armor --detach-sign repomd.xml` writes one: opaque bytes here.
SIGNATURE = (
    b"-----BEGIN PGP SIGNATURE-----\n\n"
    b"iHUEABYKAB0WIQTZ0wIyRAzz7rFTbBcsfCn7eCjVhQUCZkH3xAAKCRAsfCn7eCjV\n"
    b"hdN1AQDm0tXy1z4b5y2QX8E3mTj6bJ8v+gAuQnE4qz8lq0Ub6wD+N1w0Oj1JqXc3\n"
    b"=Xk3Q\n-----END PGP SIGNATURE-----\n"
)


def test_repomd_signature_is_kept_with_the_snapshot_and_served_beside_repomd(
    repository, yum_server, take_snapshot, transports
):
    (repository / "repodata" / "repomd.xml.asc").write_bytes(SIGNATURE)
    snapshot = take_snapshot(yum_server().url())

    assert snapshot.files.get(path="repodata/repomd.xml.asc").type == "repomd_signature"
    for transport in transports:
        answer = transport.request("GET", content_path(snapshot, "repodata/repomd.xml.asc"))
        assert (answer.status, answer.body) == (200, SIGNATURE), transport.name
        assert answer.headers["content-type"] == "application/pgp-signature"
        assert answer.headers["content-length"] == str(len(SIGNATURE))


def test_a_repository_without_a_signature_is_snapshotted_and_its_signature_is_not_found(repository, served, transports):
    _, snapshot = served

    assert not snapshot.files.filter(path="repodata/repomd.xml.asc").exists()
    for transport in transports:
        answer = transport.request("GET", content_path(snapshot, "repodata/repomd.xml.asc"))
        assert answer.status == 404, transport.name
