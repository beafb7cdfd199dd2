"""A cancel stops a running introspect or snapshot within a second, whatever step it is in:
a wait for a lock that another transaction holds, the writes of the packages and their
foreign key checks, or the parse of a large primary.xml. Real pools run the real handlers
against repositories served over HTTP on 127.0.0.1."""

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import connection, transaction

from repositories import services
from repositories.handlers.introspect import INTROSPECTION_LOCK
from repositories.models import Package, Repository, Snapshot
from tasks import client
from tasks.models import Task
from tests.helpers import wait_until
from tests.repositories.conftest import BASH
from tests.repositories.domain import (
    add,
    blob_rows,
    introspection_of,
    listed_paths,
    package_rows,
    stored_names,
    wait_for_run_end,
)
from tests.repositories.factories import RepositoryConfigurationFactory
from tests.repositories.yum_builder import Pkg, build_repository

# The bound: a cancel stops a long step within a second.
WITHIN = 1.0


@contextmanager
def held(statement: str, params: list[object] | None = None) -> Iterator[None]:
    """Run `statement` in a transaction of another connection, and hold the locks it took
    for the duration of the block."""
    taken, release = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def hold() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(statement, params)
                taken.set()
                release.wait(30)
        except BaseException as exc:  # reported to the test
            failure.append(exc)
            taken.set()
        finally:
            connection.close()

    holder = threading.Thread(target=hold, name="test-lock-holder")
    holder.start()
    try:
        assert taken.wait(10) and not failure, failure
        yield
    finally:
        release.set()
        holder.join(10)


def a_session_waits_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
        return bool(cursor.fetchone()[0])


def cancel_and_time(task_id: uuid.UUID) -> float:
    """Cancel the task; the seconds until its run has ended."""
    started = time.monotonic()
    client.cancel(task_id)
    wait_for_run_end(task_id, timeout=15)
    return time.monotonic() - started


def assert_introspection_left_nothing(task_id: uuid.UUID, repository_uuid: uuid.UUID) -> None:
    assert Task.objects.get(pk=task_id).status == Task.Status.CANCELED
    untouched = Repository.objects.get(pk=repository_uuid)
    assert (untouched.status, untouched.last_introspection_time) == (Repository.Status.PENDING, None)
    assert not package_rows(repository_uuid)


def test_a_cancel_stops_an_introspection_waiting_for_another_on_its_shared_repository(pool, upstream):
    """Many organisations' configurations share a repository, which one introspection writes
    at a time: one that waits for another is cancelled as quickly."""
    configuration = RepositoryConfigurationFactory(repository__url=upstream.url())

    # Held as another introspection of the repository holds it.
    with held("SELECT FROM repositories WHERE uuid = %s FOR UPDATE", [configuration.repository_id]):
        task_id = services.repository_introspect(configuration=configuration)
        wait_until(a_session_waits_for_a_lock, message="the introspection to wait for the repository")
        took = cancel_and_time(task_id)

    assert took < WITHIN
    assert_introspection_left_nothing(task_id, configuration.repository_id)


def test_a_cancel_stops_an_introspection_waiting_for_the_repositorys_introspection_lock(pool, upstream):
    """The lock that makes the introspections of a shared repository run one at a time."""
    configuration = RepositoryConfigurationFactory(repository__url=upstream.url())

    # Held as another introspection of the repository holds it.
    with held(f"SELECT pg_advisory_xact_lock({INTROSPECTION_LOCK})", [str(configuration.repository_id)]):
        task_id = services.repository_introspect(configuration=configuration)
        wait_until(a_session_waits_for_a_lock, message="the introspection to wait for the lock")
        took = cancel_and_time(task_id)

    assert took < WITHIN
    assert_introspection_left_nothing(task_id, configuration.repository_id)
    assert not upstream.requests  # it never went past the lock


@pytest.mark.parametrize(
    "blocked_at",
    ["the packages' insert", "a foreign key check"],
)
def test_a_cancel_stops_an_introspection_while_it_writes_the_packages(pool, upstream, blocked_at):
    """The writes run before the fence that holds the task row: a cancel does not wait for
    them (nor for foreign key checks left to the commit), and interrupts them."""
    # A package the repository lists, already stored for another: its row is found, not written.
    Package.objects.create(
        name=BASH.name,
        arch=BASH.arch,
        version=BASH.version,
        release=BASH.release,
        checksum_type="sha256",
        checksum=BASH.pkgid,
    )
    # A lock that the insert of new packages, or the check of a link to the stored one, waits for.
    lock = (
        "LOCK TABLE packages IN SHARE MODE"
        if blocked_at == "the packages' insert"
        else "SELECT FROM packages FOR UPDATE"
    )

    with held(lock):
        configuration = add(upstream.url())
        task_id = introspection_of(configuration)
        wait_until(a_session_waits_for_a_lock, message=f"the introspection to wait in {blocked_at}")
        took = cancel_and_time(task_id)

    assert took < WITHIN
    assert_introspection_left_nothing(task_id, configuration.repository_id)


@pytest.fixture(scope="module")
def large_repository(tmp_path_factory):
    """A repository whose primary.xml lists so many packages that its parses take seconds."""
    many = [Pkg(f"package-{number:06d}", "1.0", "1.el9", summary=f"Package {number}") for number in range(150_000)]
    return build_repository(tmp_path_factory.mktemp("large"), many)


def test_a_cancel_stops_a_snapshot_while_it_reads_a_large_primary(pool, yum_server, large_repository, snapshot_storage):
    server = yum_server(large_repository)
    configuration = RepositoryConfigurationFactory(repository__url=server.url(), snapshot=True)
    task_id = services.repository_snapshot(configuration=configuration)
    # Every file is stored: the snapshot reads what it downloaded now.
    listed = len(listed_paths(large_repository)) + 1
    wait_until(lambda: len(blob_rows()) == listed, timeout=60, message="every file to be stored")

    took = cancel_and_time(task_id)

    assert took < WITHIN
    assert Task.objects.get(pk=task_id).status == Task.Status.CANCELED
    assert not Snapshot.objects.exists()
    assert blob_rows() == stored_names(snapshot_storage) == set()
