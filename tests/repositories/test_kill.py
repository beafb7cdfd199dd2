"""A `manage.py runworkers` process SIGKILLed in the middle of a task of the domain: another
pool rescues the task (heartbeats of 1 s here) and its next run reaches the state that an
undisturbed run reaches."""

import hashlib
import json
import signal
import uuid

import pytest

from repositories import services
from repositories.models import Repository, RepositoryConfiguration, Snapshot
from repositories.storage import blob_name
from tasks import client
from tasks.models import Task
from tests.repositories.conftest import BASH, PACKAGES, ZSH
from tests.repositories.domain import (
    FIRST_COUNTS,
    HANDLER_TYPES,
    Gate,
    add,
    assert_no_orphans,
    blob_rows,
    described,
    files_of,
    introspection_of,
    listed_paths,
    package_rows,
    served_files,
    snapshot_task_of,
    stored_names,
    wait_for_status,
)
from tests.repositories.yum_builder import build_repository, record_path
from tests.repositories.yum_server import status


@pytest.fixture
def victim(runworkers, snapshot_storage):
    """Start a runworkers process of the domain's task types, on this test's snapshot storage."""

    def start():
        return runworkers(
            "--workers",
            "1",
            "--types",
            *HANDLER_TYPES,
            REPOSITORIES_ALLOW_PRIVATE_URLS="true",
            SNAPSHOT_STORAGE_OPTIONS=json.dumps({"location": str(snapshot_storage)}),
        )

    return start


def kill(process) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def test_a_snapshot_killed_mid_download_is_finished_by_another_pool_as_if_undisturbed(
    victim, start_pool, upstream, repository, snapshot_storage
):
    gate = Gate()
    upstream.on(f"/{listed_paths(repository)[2]}", gate)
    process = victim()
    configuration = add(upstream.url(), snapshot=True)
    task_id = snapshot_task_of(configuration)
    gate.wait_arrived(timeout=20)
    assert len(blob_rows()) == 3  # repomd.xml, primary and filelists

    kill(process)
    gate.opened.set()
    start_pool(workers=2, types=HANDLER_TYPES)
    done = wait_for_status(task_id, timeout=20)

    assert done.retries == 1
    [snapshot] = Snapshot.objects.all()
    assert snapshot.task_id == task_id
    assert files_of(snapshot) == served_files(repository)
    assert snapshot.content_counts == snapshot.added_counts == FIRST_COUNTS
    assert_no_orphans(snapshot_storage)


def test_a_snapshot_killed_mid_download_and_failing_after_leaves_nothing_stored(
    victim, start_pool, upstream, repository, snapshot_storage
):
    third = listed_paths(repository)[2]
    gate = Gate()
    upstream.on(f"/{third}", gate)
    process = victim()
    configuration = add(upstream.url(), snapshot=True)
    task_id = snapshot_task_of(configuration)
    gate.wait_arrived(timeout=20)
    assert len(blob_rows()) == 3

    kill(process)
    upstream.on(f"/{third}", status(503))  # and the upstream breaks meanwhile
    start_pool(workers=2, types=HANDLER_TYPES)
    failed = wait_for_status(task_id, Task.Status.FAILED, timeout=20)

    assert failed.error == f"HTTPStatusError: HTTP 503 Service Unavailable from {upstream.url(third)}"
    assert not Snapshot.objects.exists()
    # What the killed run stored goes too, as it would have had that run failed itself.
    assert blob_rows() == stored_names(snapshot_storage) == set()


def test_an_introspection_killed_mid_download_is_finished_by_another_pool_as_if_undisturbed(
    victim, start_pool, upstream, repository
):
    primary = record_path(repository, "primary").relative_to(repository).as_posix()
    gate = Gate()
    upstream.on(f"/{primary}", gate)
    process = victim()
    configuration = add(upstream.url())
    task_id = introspection_of(configuration)
    gate.wait_arrived(timeout=20)

    kill(process)
    gate.opened.set()
    start_pool(workers=2, types=HANDLER_TYPES)
    done = wait_for_status(task_id, timeout=20)

    assert done.retries == 1
    introspected = Repository.objects.get(pk=configuration.repository_id)
    assert package_rows(introspected.uuid) == described(*PACKAGES)
    assert (introspected.status, introspected.package_count) == (Repository.Status.VALID, 3)
    assert (introspected.failed_introspections_count, introspected.last_introspection_error) == (0, "")


def test_what_a_killed_snapshot_stored_goes_with_the_next_run_that_uses_other_files(
    victim, start_pool, upstream, repository, snapshot_storage
):
    """Rescued, the task's next run finds the upstream changed: the files the killed run
    stored and the snapshot does not use go when it records."""
    gate = Gate()
    upstream.on(f"/{listed_paths(repository)[2]}", gate)
    process = victim()
    configuration = add(upstream.url(), snapshot=True)
    task_id = snapshot_task_of(configuration)
    gate.wait_arrived(timeout=20)
    assert len(blob_rows()) == 3

    kill(process)
    build_repository(repository, [BASH], revision="2")
    gate.opened.set()
    start_pool(workers=2, types=HANDLER_TYPES)
    wait_for_status(task_id, timeout=20)

    [snapshot] = Snapshot.objects.all()
    assert files_of(snapshot) == served_files(repository)
    assert_no_orphans(snapshot_storage)


def kill_mid_snapshot(victim, upstream, repository) -> tuple[RepositoryConfiguration, uuid.UUID]:
    """A configuration whose snapshot's worker was killed with three files stored."""
    gate = Gate()
    upstream.on(f"/{listed_paths(repository)[2]}", gate)
    process = victim()
    configuration = add(upstream.url(), snapshot=True)
    task_id = snapshot_task_of(configuration)
    gate.wait_arrived(timeout=20)
    assert len(blob_rows()) == 3
    kill(process)
    return configuration, task_id


def test_what_a_killed_and_then_cancelled_snapshot_stored_is_collected_once_old_enough(
    victim, start_pool, settings, yum_server, tmp_path, upstream, repository, snapshot_storage
):
    configuration, task_id = kill_mid_snapshot(victim, upstream, repository)
    client.cancel(task_id)  # no run of it will remove what the killed one stored
    left = blob_rows()
    # And a file whose row never committed (a worker killed between the two).
    rowless = hashlib.sha256(b"a file whose row never committed").hexdigest()
    (snapshot_storage / blob_name(rowless)).parent.mkdir(parents=True, exist_ok=True)
    (snapshot_storage / blob_name(rowless)).write_bytes(b"a file whose row never committed")
    start_pool(workers=2, types=HANDLER_TYPES)
    other = yum_server(build_repository(tmp_path / "other", [ZSH])).url()

    # Young files are kept: they may be a running snapshot's, about to be recorded.
    wait_for_status(snapshot_task_of(add(other, name="other", snapshot=True)))
    assert left <= stored_names(snapshot_storage) and rowless in stored_names(snapshot_storage)

    settings.REPOSITORIES = {**settings.REPOSITORIES, "ORPHAN_FILE_AGE": 0.0}
    wait_for_status(snapshot_task_of(add(other, name="third", snapshot=True, org_id="globex")))

    assert not left & stored_names(snapshot_storage) and rowless not in stored_names(snapshot_storage)
    assert_no_orphans(snapshot_storage)


def test_what_a_killed_snapshot_stored_is_collected_when_its_configuration_is_deleted(
    victim, start_pool, settings, upstream, repository, snapshot_storage
):
    settings.REPOSITORIES = {**settings.REPOSITORIES, "ORPHAN_FILE_AGE": 0.0}
    configuration, task_id = kill_mid_snapshot(victim, upstream, repository)
    start_pool(workers=2, types=HANDLER_TYPES)

    deleting = services.repository_configuration_delete(configuration=configuration)  # cancels the snapshot
    wait_for_status(deleting, timeout=20)

    assert Task.objects.get(pk=task_id).status == Task.Status.CANCELED
    assert blob_rows() == stored_names(snapshot_storage) == set()
