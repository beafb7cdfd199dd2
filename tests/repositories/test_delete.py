"""The `delete-repository-snapshots` task: a deleted configuration's snapshots go, with the
stored files that no other snapshot uses, and then the configuration."""

from repositories import services
from repositories.models import Repository, RepositoryConfiguration, Snapshot
from tasks import client
from tasks.models import Task
from tests.helpers import wait_until
from tests.repositories.conftest import BASH, ZSH
from tests.repositories.domain import (
    FlakyStorage,
    Gate,
    add,
    assert_no_orphans,
    blob_rows,
    listed_paths,
    referenced_blobs,
    served_files,
    snapshot_task_of,
    stored_names,
    wait_for_run_end,
    wait_for_status,
)
from tests.repositories.yum_builder import build_repository


def test_deleting_removes_the_snapshots_the_files_no_one_else_uses_and_then_the_configuration(
    pool, upstream, repository, snapshot_storage
):
    leaving = add(upstream.url(), snapshot=True, org_id="acme")
    wait_for_status(snapshot_task_of(leaving))
    first_revision = set(served_files(repository).values())
    build_repository(repository, [BASH, ZSH], revision="2")
    wait_for_status(services.repository_snapshot(configuration=leaving))
    staying = add(upstream.url(), snapshot=True, org_id="globex")
    wait_for_status(snapshot_task_of(staying))
    second_revision = set(served_files(repository).values())
    assert stored_names(snapshot_storage) == first_revision | second_revision

    deleted = wait_for_status(services.repository_configuration_delete(configuration=leaving))

    assert deleted.type == "delete-repository-snapshots"
    assert not RepositoryConfiguration.objects.filter(pk=leaving.pk).exists()
    assert set(Snapshot.objects.values_list("repository_configuration", flat=True)) == {staying.pk}
    # The second revision's files stay with the snapshot of the other organisation.
    assert stored_names(snapshot_storage) == referenced_blobs() == second_revision
    assert_no_orphans(snapshot_storage)
    assert Repository.objects.filter(pk=leaving.repository_id).exists()  # the other one's too


def test_a_configuration_that_is_not_deleted_keeps_its_snapshots(pool, upstream, snapshot_storage):
    configuration = add(upstream.url(), snapshot=True)
    wait_for_status(snapshot_task_of(configuration))
    stored = stored_names(snapshot_storage)

    wait_for_status(
        client.enqueue("delete-repository-snapshots", {"repository_configuration_uuid": str(configuration.uuid)})
    )

    assert Snapshot.objects.filter(repository_configuration=configuration).count() == 1
    assert stored_names(snapshot_storage) == stored


def test_a_retry_after_the_storage_failed_removes_the_files_the_first_run_left(
    pool, upstream, snapshot_storage, tasking_settings
):
    # A failure is retried at the janitor's next look (every heartbeat, 1 s here).
    tasking_settings.TASKING = {**tasking_settings.TASKING, "RETRY_WAIT_UPPER_BOUND": 1.0}
    configuration = add(upstream.url(), snapshot=True)
    wait_for_status(snapshot_task_of(configuration))
    FlakyStorage.away.set()

    task_id = services.repository_configuration_delete(configuration=configuration)
    failed = wait_for_status(task_id, Task.Status.FAILED, Task.Status.COMPLETED)
    assert failed.status == Task.Status.FAILED
    assert failed.error.startswith("OSError: the snapshot storage is away; could not delete sha256/")
    assert not Snapshot.objects.exists()  # the first run deleted them, then failed on their files
    FlakyStorage.away.clear()

    done = wait_for_status(task_id, timeout=15)

    assert done.retries == 1
    assert not RepositoryConfiguration.objects.filter(pk=configuration.pk).exists()
    assert stored_names(snapshot_storage) == set()
    assert_no_orphans(snapshot_storage)


def test_deleting_mid_snapshot_stops_it_and_leaves_nothing_behind(pool, upstream, repository, snapshot_storage):
    gate = Gate()
    upstream.on(f"/{listed_paths(repository)[3]}", gate)
    configuration = add(upstream.url(), snapshot=True)
    snapshot_task = snapshot_task_of(configuration)
    gate.wait_arrived()  # repomd.xml, primary, filelists and other are stored

    removal = services.repository_configuration_delete(configuration=configuration)
    wait_for_run_end(snapshot_task, timeout=5)
    wait_for_status(removal)

    assert Task.objects.get(pk=snapshot_task).status == Task.Status.CANCELED
    assert not RepositoryConfiguration.objects.filter(pk=configuration.pk).exists()
    assert not Snapshot.objects.exists()
    assert blob_rows() == stored_names(snapshot_storage) == set()


def test_a_deletion_that_failed_for_good_is_queued_again_by_the_nightly_run(
    pool, upstream, snapshot_storage, tasking_settings
):
    # A failure is retried at the janitor's next look (every heartbeat, 1 s here).
    tasking_settings.TASKING = {**tasking_settings.TASKING, "RETRY_WAIT_UPPER_BOUND": 1.0}
    configuration = add(upstream.url(), snapshot=True)
    wait_for_status(snapshot_task_of(configuration))
    FlakyStorage.away.set()
    lost = services.repository_configuration_delete(configuration=configuration)
    # While it waits for a retry, its deletion is not lost.
    wait_for_status(lost, Task.Status.FAILED)
    assert services.repositories_nightly().deletions == 0
    wait_until(
        lambda: Task.objects.filter(pk=lost, status=Task.Status.FAILED, next_retry_time__isnull=True).exists(),
        timeout=20,
        message="the deletion to fail for good",
    )
    assert RepositoryConfiguration.objects.get(pk=configuration.pk).deleted_at is not None  # stranded
    FlakyStorage.away.clear()

    done = services.repositories_nightly(request_id="nightly")

    assert done.deletions == 1
    [again] = Task.objects.filter(type="delete-repository-snapshots").exclude(pk=lost)
    assert again.request_id == "nightly"
    wait_for_status(again.pk)
    assert not RepositoryConfiguration.objects.filter(pk=configuration.pk).exists()
    assert_no_orphans(snapshot_storage)
    assert services.repositories_nightly().deletions == 0
