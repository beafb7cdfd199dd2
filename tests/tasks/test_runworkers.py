"""`manage.py runworkers` as real processes: start, signals, rescue after a kill, several pools."""

import signal
import time

import pytest
from django.core.management import CommandError, call_command

from tasks import client
from tasks.models import Heartbeat, Task
from tests.helpers import wait_until


def status(task_id) -> str:
    return Task.objects.values_list("status", flat=True).get(pk=task_id)


def started(task_id) -> bool:
    return Heartbeat.objects.filter(task_id=task_id).exists()


def test_it_logs_one_line_at_start_with_its_settings(runworkers):
    process = runworkers("--workers", "2")
    line = next(line for line in process.log().splitlines() if "pool started" in line)
    for field in ("workers=2", "types=", "diagnostics.noop", "database=", "heartbeat=", "rescue_after=1.0s"):
        assert field in line


def test_sigterm_requeues_a_running_task_and_exits_0(runworkers):
    process = runworkers("--grace", "0.5")
    task_id = client.enqueue("diagnostics.sleep", {"seconds": 600})
    wait_until(lambda: started(task_id), message="the task to start")
    # The sleep handler stops at the signal; the pool puts its task back without using a retry.
    signaled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0, process.log()
    assert time.monotonic() - signaled < 5
    task = Task.objects.get(pk=task_id)
    assert (task.status, task.retries, task.token) == (Task.Status.PENDING, 0, None)
    assert not Heartbeat.objects.exists()
    assert "task requeued for shutdown" in process.log()


def test_a_killed_pools_task_is_rescued_by_another_pool(runworkers):
    doomed = runworkers("--workers", "1")
    task_id = client.enqueue("diagnostics.sleep", {"seconds": 2})
    wait_until(lambda: started(task_id), message="the task to start")
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=10)
    killed = time.monotonic()
    survivor = runworkers("--workers", "1")
    wait_until(lambda: status(task_id) == Task.Status.COMPLETED, timeout=15, message="the rescue")
    assert time.monotonic() - killed < 10
    assert Task.objects.get(pk=task_id).retries == 1
    assert f"task rescued from a dead worker task_id={task_id}" in survivor.log()


def test_cancel_reaches_a_handler_in_another_process_within_a_second(runworkers):
    process = runworkers()
    task_id = client.enqueue("diagnostics.sleep", {"seconds": 600})
    wait_until(lambda: started(task_id), message="the task to start")
    client.cancel(task_id)
    wait_until(lambda: "task stopped" in process.log(), timeout=1.0, message="the handler to stop")
    assert status(task_id) == Task.Status.CANCELED


def test_two_processes_share_the_queue_without_running_a_task_twice(runworkers):
    first = runworkers("--workers", "4")
    second = runworkers("--workers", "4")
    ids = client.enqueue_many("diagnostics.noop", [{"n": n} for n in range(2000)])
    wait_until(
        lambda: Task.objects.filter(status=Task.Status.COMPLETED).count() == len(ids),
        timeout=60,
        message="all tasks to complete",
    )
    # Every task ran in one run only: no requeue, one end line in one process.
    assert not Task.objects.exclude(retries=0).exists()
    logs = first.log() + second.log()
    for task_id in ids[:50]:
        assert logs.count(f"task completed task_id={task_id}") == 1
    assert "task completed" in first.log() and "task completed" in second.log()


def test_a_pool_leaves_types_it_does_not_serve(runworkers):
    runworkers("--types", "diagnostics.noop")
    other = client.enqueue("diagnostics.sleep", {"seconds": 0})
    mine = client.enqueue("diagnostics.noop")
    wait_until(lambda: status(mine) == Task.Status.COMPLETED, message="the noop task")
    assert status(other) == Task.Status.PENDING


def test_an_unknown_type_is_a_start_up_error(transactional_db):
    import subprocess
    import sys

    from tests.helpers import ROOT, database_url

    result = subprocess.run(
        [sys.executable, "manage.py", "runworkers", "--types", "no.such.type"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": database_url(), "SECRET_KEY": "test"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "unknown task type: 'no.such.type'" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_health_file_is_touched_every_second_while_the_pool_is_alive(runworkers, tmp_path):
    health_file = tmp_path / "alive"
    runworkers("--health-file", str(health_file))
    wait_until(health_file.exists, message="the first touch")
    first = health_file.stat().st_mtime_ns
    wait_until(lambda: health_file.stat().st_mtime_ns > first, timeout=5, message="the next touch")


def test_a_health_file_where_it_cannot_write_is_a_start_up_error(tmp_path):
    with pytest.raises(CommandError, match="--health-file: cannot write in the folder"):
        call_command("runworkers", "--health-file", str(tmp_path / "no-such-folder" / "alive"))
