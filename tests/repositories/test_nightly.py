"""The nightly run: an introspection of every live configuration, and a snapshot after it
where the flag is set, never a second one of either while one is pending or running."""

import io
import threading

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from rest_framework.test import APIClient

from contentsources.api.identity import encode_identity
from repositories import services
from repositories.exceptions import NightlyRunInProgress
from repositories.services import Nightly
from tasks import client
from tasks.models import Task
from tests.helpers import wait_until
from tests.repositories.domain import listed_paths, run_in_thread, wait_for_status, waiting_for_a_lock
from tests.repositories.factories import RepositoryConfigurationFactory
from tests.repositories.yum_server import status


def configurations():
    """Five configurations: three plain, two with snapshots, and one deleted (its deletion
    queued, as the service queues it)."""
    live = RepositoryConfigurationFactory.create_batch(3) + RepositoryConfigurationFactory.create_batch(
        2, snapshot=True
    )
    services.repository_configuration_delete(configuration=RepositoryConfigurationFactory(snapshot=True))
    return live


def tasks_by_key() -> dict[str, list[Task]]:
    """The introspect and snapshot tasks, by unique key."""
    found: dict[str, list[Task]] = {}
    for task in Task.objects.exclude(type=services.DELETE_SNAPSHOTS).prefetch_related("dependencies"):
        found.setdefault(task.unique_key, []).append(task)
    return found


@pytest.mark.django_db
def test_every_live_configuration_is_introspected_and_snapshotted_after_where_the_flag_is_set():
    live = configurations()

    done = services.repositories_nightly(batch_size=2, request_id="nightly-1")

    assert done == Nightly(introspections=5, snapshots=2, already_queued=0)
    queued = tasks_by_key()
    assert set(queued) == {f"introspect:{c.uuid}" for c in live} | {f"snapshot:{c.uuid}" for c in live if c.snapshot}
    for configuration in live:
        [introspect] = queued[f"introspect:{configuration.uuid}"]
        assert introspect.payload == {"repository_uuid": str(configuration.repository_id), "force": False}
        assert introspect.request_id == "nightly-1"
        if configuration.snapshot:
            [snapshot] = queued[f"snapshot:{configuration.uuid}"]
            assert list(snapshot.dependencies.all()) == [introspect]


@pytest.mark.django_db
def test_a_second_run_skips_what_is_still_pending_and_a_snapshot_does_not_wait_for_a_running_introspection():
    live = configurations()
    services.repositories_nightly()
    running = Task.objects.get(unique_key=f"introspect:{live[-1].uuid}")
    # The introspection of one runs; its snapshot completed.
    Task.objects.filter(pk=running.pk).update(status=Task.Status.RUNNING)
    Task.objects.filter(unique_key=f"snapshot:{live[-1].uuid}").update(status=Task.Status.COMPLETED)

    assert services.repositories_nightly() == Nightly(introspections=0, snapshots=1, already_queued=6)

    [_, snapshot] = Task.objects.filter(unique_key=f"snapshot:{live[-1].uuid}").order_by("seq")
    assert snapshot.status == Task.Status.PENDING and not snapshot.dependencies.exists()


@pytest.mark.django_db(transaction=True)
def test_a_second_run_while_one_goes_on_queues_nothing_and_says_so():
    live = configurations()
    blocker = RepositoryConfigurationFactory()
    first_pid: list[int] = []
    with transaction.atomic():
        # Another transaction holds the key of one introspection: the first run waits for it.
        client.enqueue("introspect", {}, unique_key=services.unique_key(services.INTROSPECT, blocker))

        def first():
            connection.ensure_connection()
            first_pid.append(connection.connection.info.backend_pid)
            return services.repositories_nightly(batch_size=2)

        one, first_outcome = run_in_thread(first)
        wait_until(lambda: first_pid and waiting_for_a_lock(first_pid[0]), message="the first run to wait")

        with pytest.raises(NightlyRunInProgress, match="^another nightly run is in progress: this one queued nothing$"):
            services.repositories_nightly(batch_size=2)
        transaction.set_rollback(True)
    one.join(10)

    assert first_outcome == [Nightly(introspections=6, snapshots=2, already_queued=0)]
    assert all(len(tasks) == 1 for tasks in tasks_by_key().values())
    assert len(tasks_by_key()) == 8 == len(live) + 3
    # Over, it let go of the lock.
    assert services.repositories_nightly().already_queued == 8


@pytest.mark.django_db(transaction=True)
def test_a_second_run_while_one_goes_on_in_a_transaction_queues_nothing_and_says_so():
    live = configurations()
    queued, commit = threading.Event(), threading.Event()

    def first():
        # Held open, so that the second runs entirely while the first's tasks are not committed.
        with transaction.atomic():
            done = services.repositories_nightly(batch_size=2)
            queued.set()
            assert commit.wait(10)
        return done

    one, first_outcome = run_in_thread(first)
    assert queued.wait(10)

    with pytest.raises(NightlyRunInProgress, match="^another nightly run is in progress: this one queued nothing$"):
        services.repositories_nightly(batch_size=2)
    commit.set()
    one.join(10)

    assert first_outcome == [Nightly(introspections=5, snapshots=2, already_queued=0)]
    assert all(len(tasks) == 1 for tasks in tasks_by_key().values())
    assert len(tasks_by_key()) == 7 == len(live) + 2


@pytest.mark.django_db(transaction=True)
def test_runs_one_after_the_other_each_queue_what_has_ended_meanwhile():
    """The lock is the run's, released at its end."""
    configurations()
    assert services.repositories_nightly().introspections == 5
    Task.objects.exclude(type=services.DELETE_SNAPSHOTS).update(status=Task.Status.COMPLETED)

    assert services.repositories_nightly() == Nightly(introspections=5, snapshots=2, already_queued=0)


@pytest.mark.django_db
def test_the_tasks_queued_become_the_configurations_last_ones():
    live = configurations()
    running = Task.objects.get(pk=services.repository_introspect(configuration=live[-1]))
    Task.objects.filter(pk=running.pk).update(status=Task.Status.RUNNING)

    services.repositories_nightly(batch_size=2)

    queued = tasks_by_key()
    for configuration in live:
        configuration.refresh_from_db()
        [introspect] = queued[f"introspect:{configuration.uuid}"]
        assert configuration.last_introspection_task_id == introspect.id
        if configuration.snapshot:
            [snapshot] = queued[f"snapshot:{configuration.uuid}"]
            assert configuration.last_snapshot_task_id == snapshot.id
        else:
            assert configuration.last_snapshot_task_id is None
    # The one already running stays the last one of its configuration.
    assert live[-1].last_introspection_task_id == running.id


def test_a_nightly_snapshot_that_fails_shows_its_error_on_the_configuration(pool, upstream, repository):
    configuration = RepositoryConfigurationFactory(org_id="shell", repository__url=upstream.url(), snapshot=True)
    other = listed_paths(repository)[2]
    upstream.on(f"/{other}", status(503))

    services.repositories_nightly()

    configuration.refresh_from_db()
    failed = wait_for_status(configuration.last_snapshot_task_id, Task.Status.FAILED)
    error = f"HTTPStatusError: HTTP 503 Service Unavailable from {upstream.url(other)}"
    assert failed.error == error
    assert wait_for_status(configuration.last_introspection_task_id).type == "introspect"
    output = io.StringIO()
    call_command("repositories", "show", str(configuration.uuid), stdout=output)
    assert f"snapshot error:        {error}\n" in output.getvalue()
    api = APIClient()
    api.credentials(HTTP_X_RH_IDENTITY=encode_identity(org_id="shell", account_number="acct-1", user="alice"))
    shown = api.get(f"/api/content-sources/v1/repositories/{configuration.uuid}/").json()
    assert (shown["last_snapshot_task"]["status"], shown["last_snapshot_task"]["error"]) == ("failed", error)
