"""The maintenance jobs: the cleanup (its rules, guards, batches and lock, in a command and in
the pools), retry-failed, cancel-all and stats."""

import datetime
import io
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.utils import timezone

from tasks import client, registry
from tasks.models import Heartbeat, Task, TaskDependency
from tests.factories import HeartbeatFactory, TaskFactory
from tests.helpers import ROOT, assert_one_line_command_error, database_url, wait_until

pytestmark = pytest.mark.django_db

# The cleanup's advisory lock (tasks/sql/queries.sql, cleanup_begin).
CLEANUP_LOCK = 7218553
DELETION = "delete-repository-snapshots"


def run(*args) -> str:
    out = io.StringIO()
    call_command("tasks", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def aged(type_: str, status: str, days: float, **fields) -> Task:
    """A task enqueued `days` ago; a finished one ended then too."""
    at = timezone.now() - datetime.timedelta(days=days)
    if status in (Task.Status.RUNNING, Task.Status.COMPLETED, Task.Status.FAILED):
        fields = {"started_at": at, "token": uuid.uuid4(), **fields}
    if status in (Task.Status.COMPLETED, Task.Status.FAILED):
        fields = {"finished_at": at, **fields}
    return TaskFactory(type=type_, status=status, queued_at=at, **fields)


def depends(child: Task, parent: Task) -> None:
    TaskDependency.objects.create(task=child, dependency=parent)


def remaining(tasks: dict[str, Task]) -> set[str]:
    left = set(Task.objects.filter(pk__in=[t.id for t in tasks.values()]).values_list("id", flat=True))
    return {name for name, task in tasks.items() if task.id in left}


# The original's matrix (pkg/dao/task_info_test.go TestTaskCleanup, in days), on the same type
# names, and where ours differs from it: the exact ages (not from midnight), a retry to come,
# and the fixed precedence of its canceled branch.
MATRIX = [
    # name, type, status, age in days, extra fields, deleted
    ("old completed introspect", "introspect", "completed", 32, {}, True),
    ("old failed introspect", "introspect", "failed", 32, {}, True),
    ("old completed snapshot", "snapshot", "completed", 21, {}, True),
    ("old canceled introspect", "introspect", "canceled", 21, {}, True),
    ("completed deletion after 10 days", DELETION, "completed", 10.01, {}, True),
    ("canceled deletion after 20 days", DELETION, "canceled", 20.01, {}, True),
    ("a type without a handler has the default", "gone.type", "completed", 21, {}, True),
    ("new completed introspect", "introspect", "completed", 1, {}, False),
    ("completed 19.9 days ago", "snapshot", "completed", 19.99, {}, False),
    ("new canceled snapshot", "snapshot", "canceled", 1, {}, False),
    ("completed deletion before 10 days", DELETION, "completed", 9.99, {}, False),
    ("old failed deletion: kept for good", DELETION, "failed", 32, {}, False),
    ("old pending", "introspect", "pending", 32, {}, False),
    ("old running", "snapshot", "running", 32, {}, False),
    (
        "old failed waiting for its retry",
        "snapshot",
        "failed",
        32,
        {"next_retry_time": timezone.now() + datetime.timedelta(hours=1)},
        False,
    ),
    # The original's canceled branch, outside the parentheses, deleted canceled tasks of every
    # type: a type that keeps its tasks keeps its canceled ones too.
    ("old canceled of a kept type", "test.kept", "canceled", 32, {}, False),
    ("old completed of a kept type", "test.kept", "completed", 32, {}, False),
]


def test_cleanup_deletes_by_the_originals_rules_with_its_precedence_fixed():
    tasks = {name: aged(type_, status, days, **extra) for name, type_, status, days, extra, _ in MATRIX}
    deleted = {name for name, *_, gone in MATRIX if gone}

    output = run("cleanup")

    assert remaining(tasks) == set(tasks) - deleted
    assert output.splitlines() == [
        f"deleted {len(deleted)} tasks",
        "         1  canceled   delete-repository-snapshots",
        "         1  completed  delete-repository-snapshots",
        "         1  completed  gone.type",
        "         1  canceled   introspect",
        "         1  completed  introspect",
        "         1  failed     introspect",
        "         1  completed  snapshot",
    ]


def test_the_domains_deletion_tasks_keep_the_originals_retention():
    retention = registry.get(DELETION).retention
    assert retention == registry.Retention(completed=datetime.timedelta(days=10), failed=None)
    assert registry.get("introspect").retention == registry.Retention()  # 20 days each


@pytest.mark.parametrize(
    ("child_status", "extra", "kept"),
    [
        ("pending", {}, True),
        ("running", {}, True),
        ("failed", {"next_retry_time": timezone.now() + datetime.timedelta(hours=1)}, True),
        ("failed", {}, False),
        ("completed", {}, False),
        ("canceled", {}, False),
    ],
)
@pytest.mark.parametrize("parent_status", ["completed", "canceled"])
def test_cleanup_keeps_a_task_that_a_live_task_depends_on(parent_status, child_status, extra, kept):
    parent = aged("introspect", parent_status, 32)
    child = aged("snapshot", child_status, 1, **extra)
    depends(child, parent)

    run("cleanup")

    assert Task.objects.filter(pk=parent.id).exists() is kept
    assert Task.objects.filter(pk=child.id).exists()
    assert TaskDependency.objects.filter(task=child).exists() is kept


def test_cleanup_keeps_a_canceled_task_whose_run_still_has_its_heartbeat():
    task = aged("introspect", "running", 32)
    HeartbeatFactory(task=task, token=task.token)
    Task.objects.filter(pk=task.id).update(status=Task.Status.CANCELED)  # canceled while it ran
    run("cleanup")
    assert Task.objects.filter(pk=task.id).exists()


def bulk(type_: str, status: str, days: float, count: int) -> list[uuid.UUID]:
    at = timezone.now() - datetime.timedelta(days=days)
    finished = status in (Task.Status.COMPLETED, Task.Status.FAILED)
    tasks = [
        Task(
            type=type_,
            status=status,
            queued_at=at,
            started_at=at if finished else None,
            finished_at=at if finished else None,
            token=uuid.uuid4() if finished else None,
        )
        for _ in range(count)
    ]
    return [task.id for task in Task.objects.bulk_create(tasks)]


def test_cleanup_deletes_in_batches_past_the_tasks_it_keeps():
    # Kept tasks older than the due ones fill more than a window: the pass goes on past them.
    kept = bulk(DELETION, "failed", 40, 700)
    bulk("introspect", "completed", 30, 1100)
    new = bulk("introspect", "completed", 1, 5)

    assert run("cleanup").splitlines()[0] == "deleted 1100 tasks"
    assert set(Task.objects.values_list("id", flat=True)) == {*kept, *new}


def state() -> list[tuple]:
    return list(Task.objects.order_by("id").values_list("id", "status", "cancel_attempted", "retries"))


def test_cleanup_dry_run_counts_the_same_and_deletes_nothing():
    for _name, type_, status, days, extra, _ in MATRIX:
        aged(type_, status, days, **extra)
    before = state()

    dry = run("cleanup", "--dry-run")

    assert state() == before
    assert dry.startswith("would delete 7 tasks\n")
    assert run("cleanup").replace("deleted", "would delete") == dry


@pytest.fixture
def lock_holder():
    """Another session holding the cleanup's lock, as another pool's cleanup batch would."""
    with psycopg.connect(database_url(), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", [CLEANUP_LOCK])
        yield holder


def test_cleanup_does_not_wait_for_another_cleanup(lock_holder):
    task = aged("introspect", "completed", 32)
    with pytest.raises(CommandError, match=r"^another cleanup is at work .*: deleted nothing$"):
        run("cleanup")
    assert Task.objects.filter(pk=task.id).exists()
    assert run("cleanup", "--dry-run") == "would delete 1 task\n         1  completed  introspect\n"


@pytest.mark.django_db(transaction=True)
def test_cleanup_skips_a_task_an_enqueue_is_linking_to_and_then_keeps_it():
    parent = aged("introspect", "completed", 32)
    linked, committed = threading.Event(), threading.Event()
    child_ids = []

    def enqueue_in_a_long_transaction():
        try:
            with transaction.atomic():
                child_ids.append(client.enqueue("diagnostics.noop", dependencies=[parent.id]))
                linked.set()
                committed.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=enqueue_in_a_long_transaction)
    thread.start()
    try:
        assert linked.wait(10)
        assert run("cleanup") == "deleted 0 tasks\n"  # skipped, without waiting for the enqueue
    finally:
        committed.set()
        thread.join(10)
    assert run("cleanup") == "deleted 0 tasks\n"  # now a live task depends on it
    assert Task.objects.get(pk=child_ids[0]).dependencies.get() == parent


@pytest.mark.django_db(transaction=True)
def test_a_batch_gives_up_on_a_held_reference_instead_of_holding_its_locks():
    """Deleting a task sets NULL the rows of other tables that reference it (the domain's
    last tasks); a batch waits at most 200 ms for one that another transaction holds."""
    task = aged("introspect", "completed", 32)
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE held_references (task_id uuid REFERENCES tasks (id) ON DELETE SET NULL)")
        cursor.execute("INSERT INTO held_references VALUES (%s)", [task.id])
    try:
        with psycopg.connect(database_url()) as holder:
            holder.execute("SELECT * FROM held_references FOR UPDATE")
            started = time.monotonic()
            with pytest.raises(CommandError, match=r"^cleanup stopped: a row that references a task to delete is held"):
                run("cleanup")
            assert time.monotonic() - started < 5
            assert Task.objects.filter(pk=task.id).exists()
            holder.rollback()
        assert run("cleanup").startswith("deleted 1 task\n")
        with connection.cursor() as cursor:
            cursor.execute("SELECT task_id FROM held_references")
            assert cursor.fetchall() == [(None,)]
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE held_references")


# the cleanup inside the pools


def test_a_pool_cleans_up_on_its_own_and_skips_while_another_cleanup_works(start_pool, lock_holder, caplog):
    due = bulk("introspect", "completed", 30, 600)
    kept = bulk(DELETION, "failed", 30, 3)
    with caplog.at_level(logging.DEBUG, logger="tasks.pool"):
        start_pool(workers=1, cleanup_interval=0.5)
        wait_until(lambda: "cleanup left to another pool's" in caplog.text, message="a pass that found the lock")
        assert Task.objects.filter(pk__in=due).count() == 600
        lock_holder.execute("SELECT pg_advisory_unlock(%s)", [CLEANUP_LOCK])
        wait_until(lambda: not Task.objects.filter(pk__in=due).exists(), message="the pool's cleanup")
    assert set(Task.objects.values_list("id", flat=True)) == set(kept)
    lines = re.findall(r"cleanup deleted=(\d+) completed=\1 preempted=False", caplog.text)
    assert sum(map(int, lines)) == 600, caplog.text


def test_two_runworkers_processes_clean_up_once_between_them(runworkers):
    due = bulk("introspect", "completed", 30, 2600)
    kept = bulk(DELETION, "failed", 30, 5)
    parent = aged("snapshot", "completed", 30)
    child = aged("snapshot", "pending", 0, dependencies_left=0)
    depends(child, parent)
    env = {"TASKING_CLEANUP_INTERVAL": "1s", "LOG_LEVEL": "INFO"}
    first = runworkers("--workers", "1", "--types", "diagnostics.noop", **env)
    second = runworkers("--workers", "1", "--types", "diagnostics.noop", **env)

    wait_until(lambda: not Task.objects.filter(pk__in=due).exists(), timeout=60, message="the cleanup")

    assert set(Task.objects.values_list("id", flat=True)) == {*kept, parent.id, child.id}
    # Each task was deleted by one of the two, and the passes add up to the whole.
    wait_until(lambda: deleted_in_logs(first, second) >= 2600, message="the end of the passes in the logs")
    assert deleted_in_logs(first, second) == 2600
    assert "Traceback" not in first.log() + second.log()


def deleted_in_logs(*processes) -> int:
    return sum(int(n) for process in processes for n in re.findall(r"cleanup deleted=(\d+)", process.log()))


# retry-failed


def test_retry_failed_requeues_the_recent_failures_of_a_type():
    recent = aged("diagnostics.fail", "failed", 1 / 24, retries=2)
    older = aged("diagnostics.fail", "failed", 10 / 24)
    canceled = aged("diagnostics.fail", "failed", 1 / 24, cancel_attempted=True)
    other = aged("diagnostics.noop", "failed", 1 / 24)

    output = run("retry-failed", "--type", "diagnostics.fail")

    assert output.splitlines() == [
        f"requeued {recent.id}",
        "requeued 1 failed diagnostics.fail task that ended in the last 6 hours; 1 canceled by a user left as they are",
    ]
    recent.refresh_from_db()
    # The whole retry budget again, as the original's job gives.
    assert (recent.status, recent.retries, recent.error, recent.finished_at) == ("pending", 0, None, None)
    for task in (older, canceled, other):
        assert Task.objects.get(pk=task.id).status == "failed"
    assert run("retry-failed", "--type", "diagnostics.fail", "--hours", "12").splitlines()[0] == f"requeued {older.id}"


def test_retry_failed_says_which_tasks_it_left_because_their_unique_key_is_taken():
    """A final failure frees its unique key: a new task may hold it since."""
    taken = aged("diagnostics.fail", "failed", 1 / 24, unique_key="k1")
    holder = aged("diagnostics.noop", "pending", 0, unique_key="k1")
    free = aged("diagnostics.fail", "failed", 1 / 24)

    output = run("retry-failed", "--type", "diagnostics.fail")

    statuses = dict(Task.objects.values_list("id", "status"))
    assert [statuses[t.id] for t in (taken, holder, free)] == ["failed", "pending", "pending"]
    assert output.splitlines() == [
        f"requeued {free.id}",
        f"skipped {taken.id} (another task that may still run holds its unique key)",
        "requeued 1 failed diagnostics.fail task that ended in the last 6 hours; 1 skipped",
    ]


@pytest.mark.django_db(transaction=True)
def test_retry_failed_wakes_a_running_pool(start_pool):
    start_pool(workers=1, types=["test.record"])
    task = aged("test.record", "failed", 0)
    run("retry-failed", "--type", "test.record")
    wait_until(lambda: Task.objects.get(pk=task.id).status == "completed", message="the requeued task to run")


# cancel-all


def test_cancel_all_dry_run_lists_and_writes_nothing():
    pending = aged("diagnostics.noop", "pending", 0, org_id="7")
    running = aged("diagnostics.noop", "running", 0, org_id="8")
    aged("diagnostics.noop", "completed", 0)
    before = state()

    output = run("cancel-all", "--type", "diagnostics.noop", "--dry-run")

    assert state() == before
    assert output.splitlines() == [
        f"would cancel {pending.id} (pending)",
        f"would cancel {running.id} (running)",
        "would cancel 2 diagnostics.noop tasks, with their unfinished dependents",
    ]
    org = run("cancel-all", "--type", "diagnostics.noop", "--org", "8", "--dry-run")
    assert org.splitlines()[-1] == "would cancel 1 diagnostics.noop task of org 8, with their unfinished dependents"


def test_cancel_all_cancels_a_type_cancellable_or_not_with_its_dependents():
    first = aged("diagnostics.noop", "pending", 0, org_id="7")
    second = aged("diagnostics.noop", "pending", 0, org_id="7")
    depends(second, first)
    child = aged("diagnostics.sleep", "pending", 0)
    depends(child, first)
    other_org = aged("diagnostics.noop", "pending", 0, org_id="8")

    output = run("cancel-all", "--type", "diagnostics.noop", "--org", "7")

    assert output.splitlines() == [
        f"canceled {first.id} (was pending)",
        f"{second.id} had already ended (canceled)",
        "canceled 1 diagnostics.noop task of org 7, with their unfinished dependents; 1 had already ended",
    ]
    statuses = dict(Task.objects.values_list("id", "status"))
    assert [statuses[t.id] for t in (first, second, child, other_org)] == ["canceled"] * 3 + ["pending"]


def test_cancel_all_cancels_the_tasks_of_a_type_that_lost_its_handler():
    task = aged("gone.type", "pending", 0)
    assert run("cancel-all", "--type", "gone.type").splitlines()[-1] == (
        "canceled 1 gone.type task, with their unfinished dependents"
    )
    assert Task.objects.get(pk=task.id).status == "canceled"


@pytest.mark.django_db(transaction=True)
def test_cancel_all_stops_a_running_handler(start_pool):
    pool = start_pool(workers=1, types=["test.gate"])
    task_id = client.enqueue("test.gate", {"gate": "never"})
    wait_until(lambda: pool.running(), message="the task to run")

    output = run("cancel-all", "--type", "test.gate")

    assert output.splitlines()[0] == f"canceled {task_id} (was running)"
    # The pool heard it: its handler stopped and the run's heartbeat went with it.
    wait_until(lambda: not pool.running(), message="the handler to stop")
    wait_until(lambda: not Heartbeat.objects.filter(task_id=task_id).exists(), message="the heartbeat to go")
    assert Task.objects.get(pk=task_id).status == "canceled"


# stats


def test_stats_counts_the_queue_and_shows_the_running_tasks():
    oldest = aged("diagnostics.noop", "pending", 2, dependencies_left=1)
    aged("diagnostics.noop", "pending", 1)
    aged("diagnostics.fail", "failed", 1)
    live = HeartbeatFactory(task__type="diagnostics.sleep", age=1, worker="host-a:101").task
    stale = HeartbeatFactory(task__type="diagnostics.sleep", age=600, worker="host-b:202").task

    lines = run("stats").splitlines()

    assert lines[:5] == [
        "type               pending  running  completed  failed  canceled  total",
        "diagnostics.fail         0        0          0       1         0      1",
        "diagnostics.noop         2        0          0       0         0      2",
        "diagnostics.sleep        0        2          0       0         0      2",
        "total                    2        2          0       1         0      5",
    ]
    assert re.fullmatch(
        rf"oldest pending: {oldest.id} diagnostics.noop queued \S+ \(2d 0h ago, waiting for 1 dependencies\)", lines[5]
    ), lines[5]
    assert lines[6:8] == ["runworkers processes running tasks (host:pid): 1", "  host-a:101  1 running"]
    assert lines[8] == "running with a live heartbeat (younger than TASKING_HEARTBEAT, 1m 0s): 1"
    assert re.fullmatch(
        rf"  {live.id}  diagnostics.sleep  org 1234  started \S+  beat 1\.\ds ago  by host-a:101", lines[9]
    ), lines[9]
    assert lines[10] == "running with a stale heartbeat (a dead or stalled worker: a pool requeues them): 1"
    assert lines[11].startswith(f"  {stale.id}  diagnostics.sleep") and lines[11].endswith("by host-b:202")
    assert len(lines) == 12


def test_stats_of_an_empty_queue():
    assert run("stats").splitlines() == [
        "type   pending  running  completed  failed  canceled  total",
        "total        0        0          0       0         0      0",
        "oldest pending: -",
        "runworkers processes running tasks (host:pid): 0",
        "running with a live heartbeat (younger than TASKING_HEARTBEAT, 1m 0s): 0",
    ]


@pytest.mark.django_db(transaction=True)
def test_stats_names_the_process_that_runs_a_task(start_pool):
    pool = start_pool(workers=1, types=["test.gate"])
    client.enqueue("test.gate", {"gate": "never"})
    wait_until(lambda: pool.running(), message="the task to run")

    lines = run("stats").splitlines()

    process = f"{socket.gethostname()}:{os.getpid()}"
    assert f"  {process}  1 running" in lines, lines


# bad input, from the real command line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([b"retry-failed", b"--type", b"no.such.type"], "unknown task type: 'no.such.type'"),
        ([b"retry-failed", b"--type", b"\xff"], "--type is not valid text: '\\udcff'"),
        ([b"retry-failed", b"--type", b"diagnostics.fail", b"--hours", b"0"], "--hours must be a number above 0"),
        ([b"retry-failed", b"--type", b"diagnostics.fail", b"--hours", b"nan"], "--hours must be a number above 0"),
        ([b"retry-failed", b"--type", b"diagnostics.fail", b"--hours", b"1e9"], "at most 8760 (a year): 1e+09"),
        ([b"cancel-all", b"--type", b"\xff"], "--type is not valid text: '\\udcff'"),
        ([b"cancel-all", b"--type", b"no.such.type"], "unknown task type: 'no.such.type' (no handler is registered"),
        ([b"cancel-all", b"--type", b"diagnostics.noop", b"--org", b"\xff"], "--org is not valid text: '\\udcff'"),
    ],
)
def test_bad_input_is_one_line_without_traceback_and_writes_nothing(args, message):
    failed = aged("diagnostics.fail", "failed", 0)
    pending = aged("diagnostics.noop", "pending", 0)
    before = state()
    assert_one_line_command_error([b"tasks", *args], message)
    assert state() == before
    assert {failed.id, pending.id} <= {row[0] for row in before}


@pytest.mark.parametrize("args", [["stats"], ["cleanup", "--dry-run"], ["retry-failed", "--type", "diagnostics.fail"]])
def test_an_unreachable_database_is_one_line_without_traceback(args):
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = subprocess.run(
        [sys.executable, "manage.py", "tasks", *args],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": f"postgres://postgres@127.0.0.1:{port}/nowhere", "SECRET_KEY": "test"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("CommandError: database error: connection failed"), result.stderr
