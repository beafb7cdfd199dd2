"""Fixtures and helpers of the repositories domain's tests: the services, the real task
handlers run by real worker pools, and real repositories served over HTTP.

Test modules import the fixtures they use from here (tests/repositories/conftest.py holds
those of the yum layer, which these build on).
"""

import hashlib
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import createrepo_c as cr
import pytest
from django.core.files.storage import FileSystemStorage
from django.db import connection

from repositories import services
from repositories.models import Blob, Package, RepositoryConfiguration, Snapshot
from repositories.storage import blob_name
from tasks import queue, registry
from tasks.context import TaskContext
from tasks.models import Heartbeat, Task
from tests.helpers import wait_until
from tests.repositories.yum_builder import Pkg
from tests.repositories.yum_server import Behaviour, YumServer

HANDLER_TYPES = [services.INTROSPECT, services.SNAPSHOT, services.DELETE_SNAPSHOTS]
ORG = "acme"


class FlakyStorage(FileSystemStorage):
    """A directory whose deletes fail while `away` is set: a storage service gone for a while."""

    away = threading.Event()

    def delete(self, name: str) -> None:
        if self.away.is_set():
            raise OSError(f"the snapshot storage is away; could not delete {name}")
        super().delete(name)


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def snapshot_storage(settings, tmp_path) -> Iterator[Path]:
    """The `snapshots` storage in a directory of this test's own (a FlakyStorage, there all
    the time unless the test says otherwise); yields the directory."""
    location = tmp_path / "snapshot-storage"
    location.mkdir()
    backend = f"{FlakyStorage.__module__}.{FlakyStorage.__qualname__}"
    settings.STORAGES = {**settings.STORAGES, "snapshots": {"BACKEND": backend, "OPTIONS": {"location": location}}}
    FlakyStorage.away.clear()
    yield location
    FlakyStorage.away.clear()


@pytest.fixture
def upstream(yum_server, repository) -> YumServer:
    """The small repository of tests/repositories/conftest.py, served on 127.0.0.1."""
    return yum_server()


@pytest.fixture
def pool(start_pool, snapshot_storage):
    """A worker pool in this process that runs the domain's real handlers."""
    return start_pool(workers=2, types=HANDLER_TYPES)


# --- tasks --------------------------------------------------------------------------------


def task(task_id: uuid.UUID) -> Task:
    return Task.objects.get(pk=task_id)


def wait_for_status(task_id: uuid.UUID, *statuses: str, timeout: float = 10.0) -> Task:
    """The task once it has one of `statuses` (completed if none given)."""
    expected = statuses or (Task.Status.COMPLETED,)
    wait_until(
        lambda: Task.objects.filter(pk=task_id, status__in=expected).exists(),
        timeout=timeout,
        message=f"task {task_id} to be {' or '.join(expected)} (it is {task(task_id).status}: {task(task_id).error})",
    )
    return task(task_id)


def wait_for_run_end(task_id: uuid.UUID, timeout: float = 10.0) -> None:
    """Until no run of the task is alive: its pool drops a run's heartbeat once its handler
    has returned or raised, also after a cancel."""
    wait_until(
        lambda: not Heartbeat.objects.filter(task_id=task_id).exists(), timeout=timeout, message="the run to end"
    )


def add(url: str, *, name: str = "upstream", snapshot: bool = False, org_id: str = ORG) -> RepositoryConfiguration:
    """A configuration made by the service, its introspection (and snapshot) queued."""
    return services.repository_configuration_create(org_id=org_id, name=name, url=url, snapshot=snapshot)


def introspection_of(configuration: RepositoryConfiguration) -> uuid.UUID:
    configuration.refresh_from_db()
    assert configuration.last_introspection_task_id is not None
    return configuration.last_introspection_task_id


def snapshot_task_of(configuration: RepositoryConfiguration) -> uuid.UUID:
    configuration.refresh_from_db()
    assert configuration.last_snapshot_task_id is not None
    return configuration.last_snapshot_task_id


def claim(task_id: uuid.UUID) -> queue.Run:
    """Claim this task as a pool would (it must be the only ready task of its type)."""
    [run] = queue.claim([task(task_id).type], 1)
    assert run.task.id == task_id
    return run


def run_handler(run: queue.Run) -> BaseException | None:
    """Run the real handler of a claimed task in this thread, as a worker would, with no pool
    around it: no notification or heartbeat reaches its context. Returns what it raised."""
    try:
        registry.get(run.task.type).function(TaskContext(run))
    except BaseException as exc:  # handed to the test, as the pool would record it
        return exc
    return None


# --- what is stored -------------------------------------------------------------------------

# The counts of a snapshot of the repository of tests/repositories/conftest.py.
FIRST_COUNTS = {
    "rpm.package": 3,
    "rpm.advisory": 2,
    "rpm.packagegroup": 2,
    "rpm.packageenvironment": 1,
    "rpm.modulemd": 1,
}


def package_rows(repository_uuid: uuid.UUID) -> set[tuple[object, ...]]:
    """The packages a repository lists, as stored."""
    return set(
        Package.objects.filter(repositories=repository_uuid).values_list(
            "name", "arch", "version", "release", "epoch", "checksum_type", "checksum", "summary"
        )
    )


def described(*packages: Pkg) -> set[tuple[object, ...]]:
    """The packages as `package_rows` gives them."""
    return {(p.name, p.arch, p.version, p.release, p.epoch, "sha256", p.pkgid, p.summary) for p in packages}


def files_of(snapshot: Snapshot) -> dict[str, str]:
    """A snapshot's files: the sha256 of each, by the path it is served at."""
    return {file.path: file.blob_id for file in snapshot.files.all()}


def stored_names(location: Path) -> set[str]:
    """The sha256 names of the files in the snapshot storage directory."""
    return {path.name for path in location.glob("sha256/*/*")}


def blob_rows() -> set[str]:
    return set(Blob.objects.values_list("sha256", flat=True))


def referenced_blobs() -> set[str]:
    """The blobs some snapshot references (its files, repomd.xml among them)."""
    referenced = set(Snapshot.objects.values_list("repomd_id", flat=True))
    for snapshot in Snapshot.objects.prefetch_related("files"):
        referenced.update(file.blob_id for file in snapshot.files.all())
    return referenced


def assert_no_orphans(location: Path) -> None:
    """Every blob row has its file and some snapshot that uses it, and every file its row."""
    assert stored_names(location) == blob_rows() == referenced_blobs()


def served_files(root: Path) -> dict[str, str]:
    """repodata/repomd.xml and every file it lists, by path, with the sha256 of its bytes:
    what a snapshot of the repository at `root` stores."""
    repomd = cr.Repomd()
    cr.xml_parse_repomd(str(root / "repodata" / "repomd.xml"), repomd, None)
    paths = ["repodata/repomd.xml", *(record.location_href for record in repomd.records)]
    return {path: hashlib.sha256((root / path).read_bytes()).hexdigest() for path in paths}


def listed_paths(root: Path) -> list[str]:
    """The files repomd.xml lists, in its order."""
    return list(served_files(root))[1:]


def stored_file(location: Path, sha256: str) -> bytes:
    return (location / blob_name(sha256)).read_bytes()


# --- servers that wait --------------------------------------------------------------------


class Gate:
    """A served path that holds each request until the test opens the gate (or the server
    stops), then answers with `then` (the file itself by default). `arrived` is set by the
    first request to reach it; `arrivals` counts them."""

    def __init__(self, then: Behaviour | None = None):
        self.arrived = threading.Event()
        self.opened = threading.Event()
        self.arrivals = 0
        self._lock = threading.Lock()
        self._then = then

    def __call__(self, handler: SimpleHTTPRequestHandler, stopping: threading.Event) -> None:
        with self._lock:
            self.arrivals += 1
        self.arrived.set()
        while not self.opened.wait(0.02):
            if stopping.is_set():
                return
        if self._then is None:
            SimpleHTTPRequestHandler.do_GET(handler)
        else:
            self._then(handler, stopping)

    def wait_arrived(self, timeout: float = 10.0) -> None:
        assert self.arrived.wait(timeout), "no request reached the gate"


def fail_once(then: Behaviour) -> Behaviour:
    """Answer the first request with `then`, every later one with the file."""
    answered = threading.Event()

    def answer(handler: SimpleHTTPRequestHandler, stopping: threading.Event) -> None:
        if answered.is_set():
            SimpleHTTPRequestHandler.do_GET(handler)
            return
        answered.set()
        then(handler, stopping)

    return answer


def run_in_thread(function: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Start `function` in a thread that closes its database connection at the end; the list
    receives what it returned or raised."""
    outcome: list[object] = []

    def target() -> None:
        try:
            outcome.append(function())
        except BaseException as exc:  # reported to the test through `outcome`
            outcome.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=target, name="test-caller")
    thread.start()
    return thread, outcome


def waiting_for_a_lock(backend_pid: int) -> bool:
    """Whether the database session `backend_pid` waits for a lock (another's transaction)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [backend_pid])
        row = cursor.fetchone()
    return row is not None and row[0] == "Lock"
