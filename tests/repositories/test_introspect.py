"""The `introspect` task: a real worker pool runs the real handler against real repositories
served over HTTP, and the repository's packages, counts and status are read back."""

import gzip
import hashlib
import logging
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.db import connection, transaction
from rest_framework.test import APIClient

from contentsources.api.identity import encode_identity
from repositories import services
from repositories.models import Package, Repository
from tasks import client, queue
from tasks.exceptions import TaskInterrupted
from tasks.models import Task
from tests.helpers import wait_until
from tests.repositories.conftest import BASH, PACKAGES, TMUX, ZSH
from tests.repositories.domain import (
    Gate,
    add,
    claim,
    described,
    introspection_of,
    package_rows,
    run_handler,
    wait_for_run_end,
    wait_for_status,
)
from tests.repositories.factories import RepositoryConfigurationFactory
from tests.repositories.hostile import billion_laughs, gzip_bomb
from tests.repositories.yum_builder import Pkg, build_repository, list_metadata, record_path
from tests.repositories.yum_server import YumServer, content, drip, redirect, silence, status, stream

REPOMD = "repodata/repomd.xml"


def introspect(configuration, *, force: bool = False) -> Task:
    """Queue an introspection through the service and wait for its end."""
    task_id = services.repository_introspect(configuration=configuration, force=force)
    return wait_for_status(task_id, Task.Status.COMPLETED, Task.Status.FAILED)


def paths_requested(server: YumServer) -> list[str]:
    return [path for path, _ in server.requests]


def test_an_introspection_stores_the_packages_and_marks_the_repository_valid(pool, upstream, repository):
    configuration = add(upstream.url())

    wait_for_status(introspection_of(configuration))

    introspected = Repository.objects.get(pk=configuration.repository_id)
    assert package_rows(introspected.uuid) == described(*PACKAGES)
    assert introspected.package_count == 3
    assert introspected.status == Repository.Status.VALID
    assert introspected.revision == "1"
    repomd = (repository / REPOMD).read_bytes()
    assert introspected.repomd_checksum == hashlib.sha256(repomd).hexdigest()
    assert (introspected.last_introspection_error, introspected.failed_introspections_count) == ("", 0)
    assert introspected.last_introspection_time is not None
    assert introspected.last_introspection_success_time == introspected.last_introspection_time
    assert introspected.last_introspection_update_time == introspected.last_introspection_time


def test_packages_that_two_repositories_share_are_stored_once(pool, yum_server, tmp_path):
    fish = Pkg("fish", "3.7.0", "1.el9", summary="Friendly interactive shell")
    first = yum_server(build_repository(tmp_path / "first", PACKAGES))
    second = yum_server(build_repository(tmp_path / "second", [BASH, ZSH, fish]))

    one, two = add(first.url(), name="first"), add(second.url(), name="second")
    wait_for_status(introspection_of(one))
    wait_for_status(introspection_of(two))

    assert Package.objects.count() == 4
    assert package_rows(one.repository_id) == described(BASH, ZSH, TMUX)
    assert package_rows(two.repository_id) == described(BASH, ZSH, fish)
    counts = Repository.objects.filter(pk__in=[one.repository_id, two.repository_id]).values_list(
        "package_count", flat=True
    )
    assert list(counts) == [3, 3]


def test_an_unchanged_repository_is_not_parsed_again_unless_forced(pool, upstream):
    configuration = add(upstream.url())
    wait_for_status(introspection_of(configuration))
    first = Repository.objects.get(pk=configuration.repository_id)
    primary = f"/{record_path(upstream.root, 'primary').relative_to(upstream.root).as_posix()}"
    assert paths_requested(upstream).count(primary) == 1
    # A package link lost behind the handler's back: only a parse would bring it back.
    Repository.packages.through.objects.filter(repository=first, package__name="bash").delete()

    assert introspect(configuration).status == Task.Status.COMPLETED

    unchanged = Repository.objects.get(pk=first.pk)
    assert paths_requested(upstream).count(primary) == 1
    assert len(package_rows(first.uuid)) == 2
    assert unchanged.last_introspection_time > first.last_introspection_time
    assert unchanged.last_introspection_update_time == first.last_introspection_update_time
    assert (unchanged.status, unchanged.package_count) == (Repository.Status.VALID, 3)

    assert introspect(configuration, force=True).status == Task.Status.COMPLETED

    forced = Repository.objects.get(pk=first.pk)
    assert paths_requested(upstream).count(primary) == 2
    assert package_rows(first.uuid) == described(*PACKAGES)
    assert forced.last_introspection_update_time > first.last_introspection_update_time


def test_of_two_introspections_of_one_repository_at_once_only_one_downloads_it(pool, upstream, repository, caplog):
    """The nightly run introspects each configuration; organisations share a repository."""
    primary = record_path(repository, "primary").relative_to(repository).as_posix()
    gate = Gate()
    upstream.on(f"/{primary}", gate)
    configurations = [RepositoryConfigurationFactory(repository__url=upstream.url(), org_id=org) for org in "ab"]
    services.repositories_nightly()
    gate.wait_arrived()
    wait_until(lambda: advisory_lock_waiters() == 1, message="the second introspection to wait for the first")

    with caplog.at_level(logging.INFO, logger="tasks.handler"):
        gate.opened.set()
        for configuration in configurations:
            wait_for_status(Task.objects.get(unique_key=f"introspect:{configuration.uuid}").id)

    messages = [record.getMessage().split(" task_id=")[0] for record in caplog.records]
    url = upstream.url()
    assert sorted(message for message in messages if message.startswith("repository ")) == [
        f"repository introspected meanwhile by another task url={url}",
        f"repository introspected url={url} packages=3",
    ]
    assert paths_requested(upstream).count(f"/{REPOMD}") == 1 and gate.arrivals == 1
    assert package_rows(configurations[0].repository_id) == described(*PACKAGES)


def test_a_new_revision_replaces_the_packages_exactly(pool, upstream, repository):
    configuration = add(upstream.url())
    wait_for_status(introspection_of(configuration))
    first = Repository.objects.get(pk=configuration.repository_id)
    bash_update = Pkg("bash", "5.2.26", "4.el9", summary="The GNU Bourne Again shell")
    build_repository(repository, [bash_update, ZSH], revision="2")

    assert introspect(configuration).status == Task.Status.COMPLETED

    second = Repository.objects.get(pk=first.pk)
    assert package_rows(first.uuid) == described(bash_update, ZSH)
    assert (second.revision, second.package_count) == ("2", 2)
    assert second.last_introspection_update_time > first.last_introspection_update_time
    # The packages that left the repository stay, for the other repositories that may list them.
    assert Package.objects.count() == 4


# --- bad input ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    url: str
    error: str  # the exception's class
    message: str  # a regular expression for the whole message
    status: str


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def repository_at(root: Path, name: str, packages=PACKAGES) -> Path:
    return build_repository(root / name, packages)


def unreachable_host(root: Path, server: YumServer) -> Expected:
    url = f"http://127.0.0.1:{closed_port()}/repo/"
    message = f"cannot connect to 127.0.0.1 port {url.split(':')[2].split('/')[0]} ({url}{REPOMD}): Connection refused"
    return Expected(url, "HostUnreachable", re.escape(message), Repository.Status.UNAVAILABLE)


def dns_failure(root: Path, server: YumServer) -> Expected:
    url = "http://no-such-host.invalid/repo/"
    message = rf"cannot resolve host no-such-host\.invalid \({re.escape(url + REPOMD)}\): \S.*"
    return Expected(url, "HostNotFound", message, Repository.Status.UNAVAILABLE)


def timeout(root: Path, server: YumServer) -> Expected:
    server.on(f"/silent/{REPOMD}", silence())
    url = server.url("silent/")
    return Expected(url, "FetchTimeout", re.escape(f"timed out after 0.5s waiting for {url}{REPOMD}"), "Unavailable")


def server_error(root: Path, server: YumServer) -> Expected:
    server.on(f"/error/{REPOMD}", status(503))
    url = server.url("error/")
    return Expected(
        url, "HTTPStatusError", re.escape(f"HTTP 503 Service Unavailable from {url}{REPOMD}"), "Unavailable"
    )


def forbidden(root: Path, server: YumServer) -> Expected:
    server.on(f"/forbidden/{REPOMD}", status(403))
    url = server.url("forbidden/")
    return Expected(url, "HTTPStatusError", re.escape(f"HTTP 403 Forbidden from {url}{REPOMD}"), "Unavailable")


def not_found(root: Path, server: YumServer) -> Expected:
    (root / "empty").mkdir()
    url = server.url("empty/")
    message = f"{url} is not a yum repository: HTTP 404 File not found from {url}{REPOMD}"
    return Expected(url, "NotAYumRepository", re.escape(message), Repository.Status.INVALID)


def web_page(root: Path, server: YumServer) -> Expected:
    server.on(f"/page/{REPOMD}", content(b"<!DOCTYPE html><html><body>Welcome</body></html>"))
    url = server.url("page/")
    message = f"{url} is not a yum repository: its {REPOMD} is not XML"
    return Expected(url, "NotAYumRepository", re.escape(message), Repository.Status.INVALID)


def truncated_repomd(root: Path, server: YumServer) -> Expected:
    whole = (repository_at(root, "cut") / REPOMD).read_bytes()
    server.on(f"/cut/{REPOMD}", content(whole[: len(whole) // 2]))
    url = server.url("cut/")
    message = rf"{re.escape(f'{REPOMD} of {url}')} is not well-formed XML \(line \d+: [^\n]+\)"
    return Expected(url, "MalformedMetadata", message, Repository.Status.INVALID)


def malformed_primary(root: Path, server: YumServer) -> Expected:
    broken = gzip.compress(b'<?xml version="1.0"?>\n<metadata packages="1"><package type="rpm"><name>bash</nam')
    list_metadata(repository_at(root, "malformed"), "primary", broken, "broken-primary.xml.gz")
    url = server.url("malformed/")
    message = rf"repodata/broken-primary\.xml\.gz of {re.escape(url)} is not well-formed XML \(line \d+: [^\n]+\)"
    return Expected(url, "MalformedMetadata", message, Repository.Status.INVALID)


def checksum_mismatch(root: Path, server: YumServer) -> Expected:
    primary = record_path(repository_at(root, "tampered"), "primary")
    primary.write_bytes(gzip.compress(b'<?xml version="1.0"?><metadata packages="0"/>'))
    href = primary.relative_to(root / "tampered").as_posix()
    url = server.url("tampered/")
    expected, actual = primary.name.split("-")[0], hashlib.sha256(primary.read_bytes()).hexdigest()
    message = f"sha256 checksum mismatch for {href} of {url}: expected {expected}, got {actual}"
    return Expected(url, "ChecksumMismatch", re.escape(message), Repository.Status.INVALID)


def decompression_bomb(root: Path, server: YumServer) -> Expected:
    list_metadata(repository_at(root, "bomb"), "primary", gzip_bomb(8 * 1024 * 1024), "bomb-primary.xml.gz")
    url = server.url("bomb/")
    message = (
        f"repodata/bomb-primary.xml.gz of {url} decompresses to more than 1 MiB (REPOSITORIES_MAX_DECOMPRESSED_SIZE)"
    )
    return Expected(url, "DecompressionBomb", re.escape(message), Repository.Status.INVALID)


def oversized_download(root: Path, server: YumServer) -> Expected:
    primary = record_path(repository_at(root, "huge"), "primary").relative_to(root).as_posix()
    server.on(f"/{primary}", stream(3 * 1024 * 1024, announce=False))
    url = server.url("huge/")
    message = f"{server.url(primary)} is larger than the download limit of 1 MiB (REPOSITORIES_MAX_DOWNLOAD_SIZE)"
    return Expected(url, "DownloadTooLarge", re.escape(message), Repository.Status.INVALID)


def entity_bomb(root: Path, server: YumServer) -> Expected:
    bomb = billion_laughs(
        "repomd", '<repomd xmlns="http://linux.duke.edu/metadata/repo"><revision>&lol9;</revision></repomd>'
    )
    server.on(f"/laughs/{REPOMD}", content(bomb))
    url = server.url("laughs/")
    message = (
        f"{REPOMD} of {url} uses XML entities (lol9), which yum metadata never does; refused as a possible entity bomb"
    )
    return Expected(url, "XMLEntitiesRefused", re.escape(message), Repository.Status.INVALID)


def unsupported_compression(root: Path, server: YumServer) -> Expected:
    list_metadata(repository_at(root, "zchunk"), "primary", b"\x00ZCK1" + bytes(100), "z-primary.xml.zck")
    url = server.url("zchunk/")
    message = f"repodata/z-primary.xml.zck of {url} is compressed with zchunk, "
    message += "which is not supported (use gz, bz2, xz or zst)"
    return Expected(url, "UnsupportedCompression", re.escape(message), Repository.Status.INVALID)


def redirect_loop(root: Path, server: YumServer) -> Expected:
    server.on(f"/loop/{REPOMD}", redirect(f"/loop/again/{REPOMD}"))
    server.on(f"/loop/again/{REPOMD}", redirect(f"/loop/{REPOMD}"))
    url = server.url("loop/")
    message = f"redirect loop: {url}again/{REPOMD} redirects back to {url}{REPOMD}"
    return Expected(url, "RedirectLoop", re.escape(message), Repository.Status.INVALID)


def redirect_to_ftp(root: Path, server: YumServer) -> Expected:
    server.on(f"/ftp/{REPOMD}", redirect("ftp://mirror.example.com/repo/repodata/repomd.xml"))
    message = "unsupported URL scheme 'ftp' in ftp://mirror.example.com/repo/repodata/repomd.xml: "
    message += "only http and https are fetched"
    return Expected(server.url("ftp/"), "UnsupportedScheme", re.escape(message), Repository.Status.INVALID)


def overlong_package_name(root: Path, server: YumServer) -> Expected:
    name = "a" * 300
    primary = record_path(repository_at(root, "long-name", [BASH, Pkg(name)]), "primary").relative_to(
        root / "long-name"
    )
    url = server.url("long-name/")
    message = f"{primary.as_posix()} of {url} lists a package (number 2) whose name is longer than 255 characters"
    return Expected(url, "MalformedMetadata", re.escape(message), Repository.Status.INVALID)


def epoch_out_of_range(root: Path, server: YumServer) -> Expected:
    primary = record_path(repository_at(root, "epoch", [Pkg("odd", epoch=2**40)]), "primary").relative_to(
        root / "epoch"
    )
    url = server.url("epoch/")
    message = f"{primary.as_posix()} of {url} gives the package odd the epoch {2**40}, which is out of range"
    return Expected(url, "MalformedMetadata", re.escape(message), Repository.Status.INVALID)


BAD_INPUT: list[Callable[[Path, YumServer], Expected]] = [
    unreachable_host,
    dns_failure,
    timeout,
    server_error,
    forbidden,
    not_found,
    web_page,
    truncated_repomd,
    malformed_primary,
    checksum_mismatch,
    decompression_bomb,
    oversized_download,
    entity_bomb,
    unsupported_compression,
    redirect_loop,
    redirect_to_ftp,
    overlong_package_name,
    epoch_out_of_range,
]


def test_each_bad_input_fails_its_task_with_one_line_on_the_task_and_the_repository(
    pool, yum_server, repo_root, settings
):
    settings.REPOSITORIES = {
        **settings.REPOSITORIES,
        "FETCH_TIMEOUT": 0.5,
        "MAX_DOWNLOAD_SIZE": 1024 * 1024,
        "MAX_DECOMPRESSED_SIZE": 1024 * 1024,
    }
    server = yum_server(repo_root)
    cases = {case.__name__: case(repo_root, server) for case in BAD_INPUT}
    configurations = {name: add(expected.url, name=name) for name, expected in cases.items()}

    for name, expected in cases.items():
        configuration = configurations[name]
        ended = wait_for_status(introspection_of(configuration), Task.Status.FAILED, Task.Status.COMPLETED)
        repository = Repository.objects.get(pk=configuration.repository_id)
        assert ended.status == Task.Status.FAILED, name
        assert re.fullmatch(f"{expected.error}: {expected.message}", ended.error), (name, ended.error)
        assert re.fullmatch(expected.message, repository.last_introspection_error), name
        assert "\n" not in ended.error, name
        assert (repository.status, repository.failed_introspections_count) == (expected.status, 1), name
        assert repository.package_count == 0 and not package_rows(repository.uuid), name
        assert ended.retries == 0, name  # not requeueable

    # The pool goes on working.
    good = add(server.url("good/"), name="good")
    build_repository(repo_root / "good", PACKAGES)
    wait_for_status(introspection_of(good))
    assert Repository.objects.get(pk=good.repository_id).package_count == 3


def test_a_revision_longer_than_its_column_is_kept_cut_to_it(pool, upstream, repository):
    build_repository(repository, PACKAGES, revision="r" * 300)
    configuration = add(upstream.url())

    wait_for_status(introspection_of(configuration))

    introspected = Repository.objects.get(pk=configuration.repository_id)
    assert (introspected.status, introspected.revision) == (Repository.Status.VALID, "r" * 255)


def test_failures_are_counted_until_the_next_success_which_keeps_the_packages_meanwhile(pool, upstream):
    configuration = add(upstream.url())
    wait_for_status(introspection_of(configuration))
    upstream.on(f"/{REPOMD}", status(500))

    for count in (1, 2):
        failed = introspect(configuration)
        repository = Repository.objects.get(pk=configuration.repository_id)
        assert failed.status == Task.Status.FAILED
        assert (repository.status, repository.failed_introspections_count) == (Repository.Status.UNAVAILABLE, count)
        assert repository.last_introspection_error == f"HTTP 500 Internal Server Error from {upstream.url(REPOMD)}"
        assert repository.last_introspection_success_time < repository.last_introspection_time
        assert package_rows(repository.uuid) == described(*PACKAGES)

    del upstream.behaviours[f"/{REPOMD}"]
    assert introspect(configuration).status == Task.Status.COMPLETED
    repository = Repository.objects.get(pk=configuration.repository_id)
    assert (repository.status, repository.failed_introspections_count) == (Repository.Status.VALID, 0)
    assert repository.last_introspection_error == ""


def test_a_private_address_is_refused_through_the_task_unless_allowed(pool, settings):
    settings.REPOSITORIES = {**settings.REPOSITORIES, "ALLOW_PRIVATE_URLS": False}
    configuration = add("http://127.0.0.1:9/repo/")

    failed = wait_for_status(introspection_of(configuration), Task.Status.FAILED)

    message = (
        f"refused http://127.0.0.1:9/repo/{REPOMD}: 127.0.0.1 is a loopback address; only public addresses are fetched"
    )
    assert failed.error == f"PrivateAddressRefused: {message}"
    repository = Repository.objects.get(pk=configuration.repository_id)
    assert (repository.status, repository.last_introspection_error) == (Repository.Status.INVALID, message)


def test_a_server_that_trickles_forever_fails_the_task_at_the_download_deadline(pool, settings, upstream):
    settings.REPOSITORIES = {**settings.REPOSITORIES, "DOWNLOAD_TIMEOUT": 1.0}
    upstream.on(f"/{REPOMD}", drip(b" " * 100_000, 0.2))  # a byte every 0.2 s: 5.5 hours in all
    configuration = add(upstream.url())

    failed = wait_for_status(introspection_of(configuration), Task.Status.FAILED, timeout=5)

    message = f"download of {upstream.url(REPOMD)} took longer than 1s in all (REPOSITORIES_DOWNLOAD_TIMEOUT)"
    assert failed.error == f"FetchTimeout: {message}"
    repository = Repository.objects.get(pk=configuration.repository_id)
    assert (repository.status, repository.last_introspection_error) == (Repository.Status.UNAVAILABLE, message)


def test_a_cancel_stops_a_download_within_a_second_and_records_nothing(pool, upstream, repository):
    primary = record_path(repository, "primary")
    gate = Gate(drip(primary.read_bytes(), 0.2))
    upstream.on(f"/{primary.relative_to(repository).as_posix()}", gate)
    configuration = add(upstream.url())
    task_id = introspection_of(configuration)
    gate.wait_arrived()

    cancelled = time.monotonic()
    gate.opened.set()  # the primary now drips in, a byte every 0.2 s
    client.cancel(task_id)
    wait_for_run_end(task_id, timeout=5)

    assert time.monotonic() - cancelled < 1.5
    assert Task.objects.get(pk=task_id).status == Task.Status.CANCELED
    untouched = Repository.objects.get(pk=configuration.repository_id)
    assert (untouched.status, untouched.failed_introspections_count) == (Repository.Status.PENDING, 0)
    assert untouched.last_introspection_time is None
    assert not package_rows(untouched.uuid)


def test_a_run_that_no_longer_owns_its_task_records_nothing(transactional_db, upstream):
    """A cancel that the run has not heard of yet when it comes to record what it found."""
    configuration = RepositoryConfigurationFactory(repository__url=upstream.url())
    task_id = services.repository_introspect(configuration=configuration, force=True)
    run = claim(task_id)
    client.cancel(task_id)

    assert isinstance(run_handler(run), TaskInterrupted)

    untouched = Repository.objects.get(pk=configuration.repository_id)
    assert (untouched.status, untouched.last_introspection_time) == (Repository.Status.PENDING, None)
    assert not package_rows(untouched.uuid)

    # The same when the repository is found unchanged.
    done = claim(services.repository_introspect(configuration=configuration))
    assert run_handler(done) is None and queue.complete(done)
    valid = Repository.objects.get(pk=configuration.repository_id)
    task_id = services.repository_introspect(configuration=configuration)
    run = claim(task_id)
    client.cancel(task_id)

    assert isinstance(run_handler(run), TaskInterrupted)

    assert Repository.objects.get(pk=valid.pk).last_introspection_time == valid.last_introspection_time


def api_view(org_id: str, configuration) -> dict:
    """The configuration as its organisation's API shows it."""
    api = APIClient()
    api.credentials(HTTP_X_RH_IDENTITY=encode_identity(org_id=org_id, account_number="acct", user="u"))
    answer = api.get(f"/api/content-sources/v1/repositories/{configuration.uuid}/")
    assert answer.status_code == 200, answer.content
    return answer.json()


def test_organisations_sharing_a_repository_introspect_it_once_and_see_the_same_result(pool, upstream, repository):
    primary = f"/{record_path(repository, 'primary').relative_to(repository).as_posix()}"
    gate = Gate()
    upstream.on(primary, gate)
    with transaction.atomic():  # queued together, as a nightly run queues them
        acme = add(upstream.url(), org_id="acme")
        globex = add(upstream.url(), org_id="globex")
    gate.wait_arrived()
    # The other task waits for the repository's lock, not for the server.
    wait_until(lambda: advisory_lock_waiters() == 1, message="the second introspection to wait for the first")
    gate.opened.set()

    for configuration in (acme, globex):
        wait_for_status(introspection_of(configuration))
    assert paths_requested(upstream).count(f"/{REPOMD}") == 1
    assert gate.arrivals == 1
    for org_id, configuration in (("acme", acme), ("globex", globex)):
        shown = api_view(org_id, configuration)
        assert (shown["status"], shown["package_count"], shown["failed_introspections_count"]) == ("Valid", 3, 0)


def test_a_failure_of_a_shared_repository_is_counted_once_and_shown_to_every_organisation(pool, upstream):
    gate = Gate(status(503))
    upstream.on(f"/{REPOMD}", gate)
    with transaction.atomic():
        acme = add(upstream.url(), org_id="acme")
        globex = add(upstream.url(), org_id="globex")
    gate.wait_arrived()
    wait_until(lambda: advisory_lock_waiters() == 1, message="the second introspection to wait for the first")
    gate.opened.set()

    message = f"HTTP 503 Service Unavailable from {upstream.url(REPOMD)}"
    ended = [wait_for_status(introspection_of(c), Task.Status.FAILED) for c in (acme, globex)]
    assert sorted(task.error for task in ended) == [f"HTTPStatusError: {message}", f"IntrospectionFailed: {message}"]
    assert gate.arrivals == 1
    for org_id, configuration in (("acme", acme), ("globex", globex)):
        shown = api_view(org_id, configuration)
        assert (shown["status"], shown["failed_introspections_count"]) == ("Unavailable", 1)
        assert shown["last_introspection_error"] == message

    # A later introspection of one organisation counts a second failure, which both see.
    gate.arrived.clear()
    assert introspect(acme).status == Task.Status.FAILED
    assert [api_view(o, c)["failed_introspections_count"] for o, c in (("acme", acme), ("globex", globex))] == [2, 2]


def advisory_lock_waiters() -> int:
    """How many database sessions wait for an advisory lock."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        return int(cursor.fetchone()[0])
