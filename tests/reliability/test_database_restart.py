"""Scenario 4: the database goes away under a running pool. The pool reconnects by itself, its
listener subscribes again, and tasks queued after the outage are picked up; none stays stuck.

Handlers use the database too (the ledger), as real ones do, so each worker thread's own
connection must recover as well as the pool's."""

import json
import signal
import time
import uuid

from django.db import connection

from tasks import client
from tasks.models import Task
from tests.helpers import wait_until
from tests.reliability import ledger
from tests.reliability.processes import manage

FINAL = {Task.Status.COMPLETED, Task.Status.FAILED, Task.Status.CANCELED}
PROCESSES = 2
WORKERS = 3
OUTAGE = 3.0  # three heartbeat timeouts
ACROSS = 6.0  # a run going on through the outage and past it
LISTENING = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN cancel_task'"


def enqueue_remote(url: str, payloads: list, type_: str = "reliability.work") -> list[str]:
    """Enqueue through tasks.client in a process of its own, on the server at `url`."""
    code = (
        "import json; from tasks import client; "
        f"print(json.dumps([str(i) for i in client.enqueue_many({type_!r}, {payloads!r})]))"
    )
    result = manage(url, "shell", "-c", code)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def remote_statuses(server, ids: list[str], column: str = "status") -> dict[str, str]:
    with server.connect() as conn:
        rows = conn.execute(f"SELECT id::text, {column} FROM tasks WHERE id = ANY(%s::uuid[])", [ids]).fetchall()
    return dict(rows)


def remote_errors(server, ids: list[str]) -> list[str]:
    with server.connect() as conn:
        rows = conn.execute("SELECT error FROM tasks WHERE id = ANY(%s::uuid[]) AND error IS NOT NULL", [ids])
        return [row[0] for row in rows]


def remote_runs(server) -> dict:
    with server.connect() as conn:
        return ledger.runs(conn.execute(f"SELECT {', '.join(ledger.COLUMNS)} FROM reliability_ledger").fetchall())


def remote_listeners(server) -> int:
    with server.connect() as conn:
        return conn.execute(LISTENING).fetchone()[0]


def remote_pickup(server, task_id: str) -> tuple | None:
    """(seconds from the enqueue to the start of the task's first run,) once it started."""
    with server.connect() as conn:
        return conn.execute(
            "SELECT min(l.started) - extract(epoch FROM t.queued_at)::float8 FROM reliability_ledger l "
            "JOIN tasks t ON t.id = l.task_id WHERE t.id = %s::uuid GROUP BY t.queued_at",
            [task_id],
        ).fetchone()


def test_the_pool_rides_out_a_database_restart(throwaway_postgres, fleet, summary):
    server, url = throwaway_postgres, throwaway_postgres.url()
    migrated = manage(url, "migrate", "--no-input")
    assert migrated.returncode == 0, migrated.stderr
    pools = fleet("--workers", str(WORKERS), url=url)
    for _ in range(PROCESSES):
        pools.start()
    # As many tasks as workers, at once: worker threads have their own connections open.
    before = enqueue_remote(url, [{"seconds": 0.5}] * WORKERS * PROCESSES)
    wait_until(lambda: set(remote_statuses(server, before).values()) == {"completed"}, message="the tasks before")
    across = enqueue_remote(url, [{"seconds": ACROSS}] * PROCESSES)
    wait_until(
        lambda: set(remote_statuses(server, across).values()) == {"running"}, message="the tasks across the restart"
    )

    server.stop()
    time.sleep(OUTAGE)  # the outage itself
    server.start()
    after = enqueue_remote(url, [{"seconds": 0.05}] * WORKERS * PROCESSES)
    ids = [*before, *across, *after]
    wait_until(
        lambda: set(remote_statuses(server, ids).values()) <= FINAL,
        timeout=30,
        interval=0.2,
        message="every task to finish after the restart",
    )
    wait_until(lambda: remote_listeners(server) == PROCESSES, message="the listeners to re-subscribe")
    [late] = enqueue_remote(url, [{"seconds": 0}])
    [delay] = wait_until(lambda: remote_pickup(server, late), timeout=10, message="the late task to start")
    statuses = remote_statuses(server, [*ids, late])
    by_task = remote_runs(server)
    overlaps = ledger.overlaps(by_task, pools.deaths)
    across_runs = [len(by_task[uuid.UUID(task_id)]) for task_id in across]
    across_retries = sorted(remote_statuses(server, across, "retries").values())
    summary(
        "database restart",
        tasks=len(statuses),
        outage=f"{OUTAGE:.0f}s",
        completed=sum(status == "completed" for status in statuses.values()),
        failed=sum(status == "failed" for status in statuses.values()),
        runs_of_tasks_across=across_runs,
        retries_of_tasks_across=across_retries,
        pickup_after_restart=f"{delay:.2f}s",
        overlaps=len(overlaps),
        unexpected_exits=len(pools.exits),
    )
    assert set(statuses.values()) == {"completed"}, remote_errors(server, list(statuses))
    # A run alive through the outage was not taken for a dead worker's and run again.
    assert across_retries == [0] * PROCESSES
    assert across_runs == [1] * PROCESSES
    assert overlaps == []
    assert delay < 1.0  # woken by a notification, not by the 5 s safety re-check
    assert pools.exits == []


def test_the_pool_recovers_when_its_backends_are_terminated(fleet, summary):
    pools = fleet("--workers", str(WORKERS))
    pools.start()
    first = client.enqueue_many("reliability.work", [{"seconds": 0.5}] * WORKERS)
    wait_until(
        lambda: Task.objects.filter(pk__in=first, status=Task.Status.COMPLETED).count() == WORKERS,
        message="the first tasks (every worker thread has its own connection open)",
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        terminated = cursor.fetchone()[0]
    after = client.enqueue_many("reliability.work", [{"seconds": 0.05}] * 4)
    wait_until(
        lambda: not Task.objects.filter(pk__in=after).exclude(status__in=FINAL).exists(),
        timeout=15,
        message="the tasks queued after the termination to finish",
    )

    def listening():
        with connection.cursor() as cursor:
            cursor.execute(LISTENING)
            return cursor.fetchone()[0] == 1

    wait_until(listening, message="the listener to re-subscribe")
    late = client.enqueue("reliability.work")
    enqueued = time.time()
    wait_until(lambda: late in ledger.runs(), timeout=10, message="the late task to start")
    delay = ledger.runs()[late][0].started - enqueued
    statuses = dict(Task.objects.filter(pk__in=after).values_list("id", "status"))
    summary(
        "backends terminated",
        terminated=terminated,
        tasks=len(first) + len(after) + 1,
        completed_after=sum(status == Task.Status.COMPLETED for status in statuses.values()),
        failed_after=sum(status == Task.Status.FAILED for status in statuses.values()),
        pickup_after=f"{delay:.2f}s",
    )
    assert set(statuses.values()) == {Task.Status.COMPLETED}, list(
        Task.objects.filter(pk__in=after).exclude(error=None).values_list("error", flat=True)
    )
    assert delay < 1.0


def test_an_end_held_through_an_outage_is_written_at_sigterm_before_the_exit(throwaway_postgres, fleet, summary):
    """A task ends while the database is away; the dispatcher backs off, its waits doubling
    past the grace. The database comes back and SIGTERM arrives while it still sleeps: the
    stop writes the end itself before the process exits, so the task is completed once and
    never run again by a rescue."""
    server, url = throwaway_postgres, throwaway_postgres.url()
    migrated = manage(url, "migrate", "--no-input")
    assert migrated.returncode == 0, migrated.stderr
    pools = fleet("--workers", "1", "--grace", "3", url=url)
    process = pools.start()
    [task_id] = enqueue_remote(url, [{"seconds": 3.0}], type_="diagnostics.sleep")
    wait_until(lambda: remote_statuses(server, [task_id]) == {task_id: "running"}, message="the task to start")

    server.stop()
    # Five failed steps in a row: the dispatcher now sleeps 8 s, longer than the grace.
    wait_until(
        lambda: process.log().count("recording ends and claiming tasks failed") >= 5,
        timeout=30,
        interval=0.05,
        message="the dispatcher to back off five times",
    )
    server.start()
    signaled = time.monotonic()
    code = pools.stop(0, signal.SIGTERM, timeout=15)
    stopped_in = time.monotonic() - signaled
    statuses = remote_statuses(server, [task_id])
    with server.connect() as conn:
        heartbeats = conn.execute("SELECT count(*) FROM task_heartbeats").fetchone()[0]
    summary("end held through an outage", exit_code=code, stopped_in=f"{stopped_in:.1f}s", status=statuses[task_id])
    assert code == 0, process.log()
    assert statuses == {task_id: "completed"}, process.log()
    assert heartbeats == 0
    assert stopped_in < 3.0 + 2.0  # the grace, and room for a loaded machine to exit
