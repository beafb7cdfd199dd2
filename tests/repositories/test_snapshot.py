"""The `snapshot` task: every metadata file of a real repository stored once by its sha256
in the snapshot storage, the snapshot recorded with its counts, and nothing left behind by a
snapshot that fails or is cancelled."""

import time

from repositories import services
from repositories.models import Blob, RepositoryConfiguration, Snapshot
from tasks import client, queue
from tasks.exceptions import TaskInterrupted
from tasks.models import Task
from tests.repositories.conftest import BASH, TMUX, ZSH
from tests.repositories.domain import (
    FIRST_COUNTS,
    Gate,
    add,
    assert_no_orphans,
    blob_rows,
    claim,
    files_of,
    listed_paths,
    run_handler,
    run_in_thread,
    served_files,
    snapshot_task_of,
    stored_file,
    stored_names,
    wait_for_run_end,
    wait_for_status,
)
from tests.repositories.factories import RepositoryConfigurationFactory
from tests.repositories.yum_builder import Advisory, Group, ModuleStream, Pkg, build_repository, list_metadata
from tests.repositories.yum_server import content, drip, status


def only_snapshot(configuration: RepositoryConfiguration) -> Snapshot:
    [snapshot] = Snapshot.objects.filter(repository_configuration=configuration)
    return snapshot


def test_a_snapshot_stores_every_listed_file_by_its_sha256_and_records_its_counts(
    pool, upstream, repository, snapshot_storage
):
    configuration = add(upstream.url(), snapshot=True)

    task_id = snapshot_task_of(configuration)
    wait_for_status(task_id)

    snapshot = only_snapshot(configuration)
    expected = served_files(repository)
    assert len(expected) == 8  # repomd.xml, primary, filelists, other, updateinfo, comps twice, modules
    assert files_of(snapshot) == expected
    for path, sha256 in expected.items():
        assert stored_file(snapshot_storage, sha256) == (repository / path).read_bytes(), path
    assert {file.path: file.type for file in snapshot.files.all()}["repodata/repomd.xml"] == "repomd"
    assert snapshot.repomd_id == expected["repodata/repomd.xml"]
    assert dict(Blob.objects.values_list("sha256", "size")) == {
        sha256: (repository / path).stat().st_size for path, sha256 in expected.items()
    }
    assert snapshot.content_counts == FIRST_COUNTS
    assert (snapshot.added_counts, snapshot.removed_counts) == (FIRST_COUNTS, {})
    assert snapshot.task_id == task_id
    configuration.refresh_from_db()
    assert configuration.last_snapshot_id == snapshot.uuid
    assert_no_orphans(snapshot_storage)


def test_a_second_snapshot_counts_what_the_upstream_gained_and_lost(pool, upstream, repository, snapshot_storage):
    configuration = add(upstream.url(), snapshot=True)
    wait_for_status(snapshot_task_of(configuration))
    bash_update = Pkg("bash", "5.2.26", "4.el9", summary="The GNU Bourne Again shell")
    fish = Pkg("fish", "3.7.0", "1.el9")
    build_repository(
        repository,
        [bash_update, ZSH, fish],
        advisories=[Advisory("RHSA-2024:0001", packages=(BASH,)), Advisory("RHSA-2024:0003", packages=(fish,))],
        # Groups and module streams by identity, not by position or content: "core" changed
        # its packages and stays; "shells" left and "editors" came, at the same position; the
        # tmux stream was rebuilt (a new version) and fish's came.
        groups=[Group("core", packages=("bash", "zsh")), Group("editors", packages=("fish",))],
        environments=[],
        modules=[
            ModuleStream("tmux", "3", version=2, packages=(TMUX,)),
            ModuleStream("fish", "3", packages=(fish,)),
        ],
        revision="2",
    )

    second_task = services.repository_snapshot(configuration=configuration)
    wait_for_status(second_task)

    second = Snapshot.objects.get(task_id=second_task)
    assert second.content_counts == {
        "rpm.package": 3,
        "rpm.advisory": 2,
        "rpm.packagegroup": 2,
        "rpm.packageenvironment": 0,
        "rpm.modulemd": 2,
    }
    assert second.added_counts == {
        "rpm.package": 2,
        "rpm.advisory": 1,
        "rpm.packagegroup": 1,
        "rpm.packageenvironment": 0,
        "rpm.modulemd": 2,
    }
    assert second.removed_counts == {
        "rpm.package": 2,
        "rpm.advisory": 1,
        "rpm.packagegroup": 1,
        "rpm.packageenvironment": 1,
        "rpm.modulemd": 1,
    }
    assert files_of(second) == served_files(repository)
    assert Snapshot.objects.filter(repository_configuration=configuration).count() == 2
    configuration.refresh_from_db()
    assert configuration.last_snapshot_id == second.uuid
    assert_no_orphans(snapshot_storage)


def test_two_configurations_of_one_upstream_share_its_stored_files(pool, upstream, repository, snapshot_storage):
    one = add(upstream.url(), snapshot=True, org_id="acme")
    two = add(upstream.url(), snapshot=True, org_id="globex")

    wait_for_status(snapshot_task_of(one))
    wait_for_status(snapshot_task_of(two))

    assert files_of(only_snapshot(one)) == files_of(only_snapshot(two)) == served_files(repository)
    assert blob_rows() == stored_names(snapshot_storage) == set(served_files(repository).values())


def test_a_failed_snapshot_leaves_no_snapshot_and_no_stored_file(pool, upstream, repository, snapshot_storage):
    configuration = add(upstream.url(), snapshot=True)
    wait_for_status(snapshot_task_of(configuration))
    kept = set(served_files(repository).values())
    build_repository(repository, [BASH, ZSH], revision="2")
    modules = listed_paths(repository)[-1]
    upstream.on(f"/{modules}", content(b"not what repomd.xml says"))

    failed = wait_for_status(services.repository_snapshot(configuration=configuration), Task.Status.FAILED)

    assert failed.error.startswith(f"ChecksumMismatch: sha256 checksum mismatch for {modules} of {upstream.url()}: ")
    assert "\n" not in failed.error
    assert Snapshot.objects.count() == 1
    # The new revision's repomd.xml and its files before the bad one were stored, then removed.
    assert blob_rows() == stored_names(snapshot_storage) == kept
    assert_no_orphans(snapshot_storage)


def test_a_cancel_mid_download_stops_within_a_second_and_stores_nothing(pool, upstream, repository, snapshot_storage):
    other = listed_paths(repository)[2]
    gate = Gate(drip((repository / other).read_bytes(), 0.2))
    upstream.on(f"/{other}", gate)
    configuration = add(upstream.url(), snapshot=True)
    task_id = snapshot_task_of(configuration)
    gate.wait_arrived()  # repomd.xml, primary and filelists are stored by now
    assert len(blob_rows()) == 3

    cancelled = time.monotonic()
    gate.opened.set()
    client.cancel(task_id)
    wait_for_run_end(task_id, timeout=5)

    assert time.monotonic() - cancelled < 1.5
    assert Task.objects.get(pk=task_id).status == Task.Status.CANCELED
    assert not Snapshot.objects.exists()
    assert blob_rows() == stored_names(snapshot_storage) == set()


def test_a_run_after_the_snapshot_was_recorded_records_nothing_more(
    transactional_db, snapshot_storage, upstream, repository
):
    configuration = RepositoryConfigurationFactory(repository__url=upstream.url(), snapshot=True)
    task_id = services.repository_snapshot(configuration=configuration)
    first = claim(task_id)
    assert run_handler(first) is None
    # The worker died before it recorded the end: a rescue puts the task back, and it runs again.
    assert queue.requeue(task_id, first.token, count_retry=True) == Task.Status.PENDING
    again = claim(task_id)
    requests = len(upstream.requests)

    assert run_handler(again) is None

    assert files_of(only_snapshot(configuration)) == served_files(repository)
    assert len(upstream.requests) == requests  # nothing fetched again
    assert_no_orphans(snapshot_storage)


def test_a_run_that_no_longer_owns_its_task_records_no_snapshot(
    transactional_db, snapshot_storage, upstream, repository
):
    """A cancel, or a rescue, that the run has not heard of yet (its notification or its next
    heartbeat is on the way) while it finishes the snapshot: the snapshot is not its to record."""
    canceled = RepositoryConfigurationFactory(repository__url=upstream.url(), snapshot=True)
    task_id = services.repository_snapshot(configuration=canceled)
    run = claim(task_id)
    client.cancel(task_id)

    raised = run_handler(run)

    assert isinstance(raised, TaskInterrupted), raised
    assert not Snapshot.objects.exists()
    assert blob_rows() == stored_names(snapshot_storage) == set()

    rescued = RepositoryConfigurationFactory(repository__url=upstream.url(), snapshot=True, org_id="globex")
    task_id = services.repository_snapshot(configuration=rescued)
    lost = claim(task_id)
    queue.requeue(task_id, lost.token, count_retry=True)
    owner = claim(task_id)

    assert isinstance(run_handler(lost), TaskInterrupted)
    assert not Snapshot.objects.exists()
    assert run_handler(owner) is None
    assert only_snapshot(rescued).task_id == task_id
    assert_no_orphans(snapshot_storage)


def test_a_run_cancelled_part_way_without_hearing_of_it_records_nothing_and_removes_what_it_stored(
    transactional_db, snapshot_storage, upstream, repository
):
    gate = Gate()
    upstream.on(f"/{listed_paths(repository)[2]}", gate)
    configuration = RepositoryConfigurationFactory(repository__url=upstream.url(), snapshot=True)
    task_id = services.repository_snapshot(configuration=configuration)
    run = claim(task_id)
    thread, outcome = run_in_thread(lambda: run_handler(run))
    gate.wait_arrived()
    assert len(blob_rows()) == 3

    client.cancel(task_id)
    gate.opened.set()
    thread.join(10)

    [raised] = outcome
    assert isinstance(raised, TaskInterrupted), raised
    assert not Snapshot.objects.exists()
    assert blob_rows() == stored_names(snapshot_storage) == set()


def test_a_failing_snapshot_leaves_the_files_that_another_one_is_about_to_record(
    pool, yum_server, repository, snapshot_storage
):
    """Two upstreams serve the same files: the second snapshot finds the files the first
    stored; the first then fails and removes what it stored, which nothing references yet."""
    first, second = yum_server(), yum_server()
    paths = listed_paths(repository)
    failing = Gate(status(500))
    first.on(f"/{paths[1]}", failing)
    last = Gate()
    second.on(f"/{paths[-1]}", last)
    one = add(first.url(), name="first", snapshot=True)
    failing.wait_arrived()  # the first stored repomd.xml and primary
    two = add(second.url(), name="second", snapshot=True)
    last.wait_arrived()  # the second found those two stored, and stored the rest but the last

    failing.opened.set()
    wait_for_status(snapshot_task_of(one), Task.Status.FAILED)
    last.opened.set()
    done = wait_for_status(snapshot_task_of(two), Task.Status.COMPLETED, Task.Status.FAILED)

    assert done.status == Task.Status.COMPLETED, done.error
    assert files_of(only_snapshot(two)) == served_files(repository)
    assert_no_orphans(snapshot_storage)


def test_a_listed_file_outside_the_repository_fails_the_snapshot_and_nothing_is_stored(
    pool, upstream, repository, snapshot_storage
):
    list_metadata(repository, "other", b"<otherdata/>", "other.xml")
    repomd = repository / "repodata" / "repomd.xml"
    repomd.write_text(repomd.read_text().replace('href="repodata/other.xml"', 'href="repodata/../../secret.xml"'))
    configuration = add(upstream.url(), snapshot=True)

    failed = wait_for_status(snapshot_task_of(configuration), Task.Status.FAILED)

    message = f"repodata/repomd.xml of {upstream.url()} lists a file outside the repository: ../secret.xml"
    assert failed.error == f"MalformedMetadata: {message}"
    assert "/secret.xml" not in [path for path, _ in upstream.requests]
    assert not Snapshot.objects.exists()
    assert blob_rows() == stored_names(snapshot_storage) == set()
