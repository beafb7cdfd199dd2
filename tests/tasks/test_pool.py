"""The worker pool in this process: threads, notifications, heartbeats and cancellation."""

import logging
import os
import socket
import threading
import time

import pytest
from django.db import connection, transaction

from tasks import client, queue
from tasks.context import StopReason
from tasks.handoff import AHEAD_HOLD
from tasks.models import Heartbeat, Task
from tasks.pool import SAFETY_RECHECK
from tests.factories import HeartbeatFactory, TaskFactory
from tests.handlers import recorder
from tests.helpers import wait_until


def status(task_id) -> str:
    return Task.objects.values_list("status", flat=True).get(pk=task_id)


def wait_for_status(task_id, expected: str, timeout: float = 10.0) -> Task:
    wait_until(lambda: status(task_id) == expected, timeout=timeout, message=f"task {task_id} to be {expected}")
    return Task.objects.get(pk=task_id)


def run_ids() -> list:
    return [run["id"] for run in recorder.runs]


def test_dependents_run_after_their_parent_completes(start_pool):
    start_pool(workers=3)
    parent = client.enqueue("test.gate", {"gate": "parent"})
    child = client.enqueue("test.record", {"n": "child"}, dependencies=[parent])
    wait_until(lambda: parent in run_ids(), message="the parent to start")
    assert status(child) == Task.Status.PENDING
    recorder.gate("parent").set()
    wait_for_status(child, Task.Status.COMPLETED)
    assert run_ids() == [parent, child]
    assert Task.objects.get(pk=child).started_at >= Task.objects.get(pk=parent).finished_at


def test_a_failing_parent_cancels_its_descendants_and_the_worker_goes_on(start_pool):
    start_pool(workers=1)
    parent = client.enqueue("diagnostics.fail", {"message": "no mirror answers"})
    child = client.enqueue("test.record", dependencies=[parent])
    grandchild = client.enqueue("test.record", dependencies=[child])
    after = client.enqueue("test.record", {"n": "after"})
    failed = wait_for_status(parent, Task.Status.FAILED)
    assert failed.error == "RuntimeError: no mirror answers"
    wait_for_status(after, Task.Status.COMPLETED)
    assert status(child) == status(grandchild) == Task.Status.CANCELED
    assert run_ids() == [after]


def test_priority_order(start_pool):
    blocker = client.enqueue("test.gate", {"gate": "blocker"})
    pool = start_pool(workers=1)
    wait_until(lambda: blocker in run_ids(), message="the blocker to start")
    low = [client.enqueue("test.record", {"n": n}) for n in range(3)]
    high = client.enqueue("test.record", {"n": "high"}, priority=1)
    recorder.gate("blocker").set()
    wait_until(lambda: len(recorder.runs) == 5, message="all tasks to run")
    assert run_ids() == [blocker, high, *low]
    wait_until(lambda: pool.running() == [], message="every run to be recorded")


def test_a_pool_never_takes_a_type_it_does_not_serve(start_pool):
    start_pool(types=["test.record"])
    other = client.enqueue("diagnostics.noop")
    mine = client.enqueue("test.record")
    wait_for_status(mine, Task.Status.COMPLETED)
    assert status(other) == Task.Status.PENDING


def test_a_waiting_pool_is_woken_by_the_notification(start_pool):
    start_pool(workers=2)
    latencies = []
    for n in range(5):
        task_id = client.enqueue("test.record", {"n": n})
        enqueued = time.monotonic()
        wait_until(lambda task_id=task_id: task_id in run_ids(), timeout=SAFETY_RECHECK, message="the pickup")
        latencies.append(recorder.runs[-1]["started"] - enqueued)
    # Far below the safety re-check: the notification woke the dispatcher.
    assert max(latencies) < 1.0, latencies


def test_a_missed_notification_is_caught_by_the_safety_recheck(start_pool):
    pool = start_pool(workers=1)
    time.sleep(0.1)  # let the dispatcher find the queue empty and wait
    task = TaskFactory(type="test.record")  # inserted without NOTIFY
    wait_for_status(task.id, Task.Status.COMPLETED, timeout=SAFETY_RECHECK + 3)
    wait_until(lambda: pool.running() == [], message="every run to be recorded")


def test_cancel_of_a_running_task_reaches_its_handler_within_a_second(start_pool):
    start_pool(workers=1)
    task_id = client.enqueue("diagnostics.sleep", {"seconds": 60})
    wait_until(lambda: Heartbeat.objects.filter(task_id=task_id).exists(), message="the task to start")
    started = time.monotonic()
    client.cancel(task_id)
    follow_up = client.enqueue("test.record")
    wait_until(lambda: follow_up in run_ids(), timeout=1.0, message="the worker to be free again")
    assert time.monotonic() - started < 1.0
    task = Task.objects.get(pk=task_id)
    assert (task.status, task.error, task.finished_at) == (Task.Status.CANCELED, "task canceled", None)


def test_a_handler_that_returns_after_a_cancel_leaves_the_task_canceled(start_pool):
    """The original marked such a task completed (its handlers return nil on cancel)."""
    pool = start_pool(workers=1)
    task_id = client.enqueue("test.ignores_cancel")
    wait_until(lambda: task_id in run_ids(), message="the task to start")
    client.cancel(task_id)
    wait_until(lambda: pool.running() == [], message="the handler to return")
    follow_up = client.enqueue("test.record")
    wait_for_status(follow_up, Task.Status.COMPLETED)
    assert status(task_id) == Task.Status.CANCELED


def test_a_lost_cancel_notification_is_caught_at_the_next_heartbeat(start_pool):
    pool = start_pool(workers=1)
    task_id = client.enqueue("test.gate", {"gate": "never"})
    wait_until(lambda: task_id in run_ids(), message="the task to start")
    # Cancel as Cancel does, but without the notification (as if the listener were away).
    with connection.cursor() as cursor:
        cursor.execute("UPDATE tasks SET status = 'canceled', error = 'task canceled' WHERE id = %s", [task_id])
        cursor.execute("DELETE FROM task_heartbeats WHERE id = %s", [task_id])
    wait_until(lambda: pool.running() == [], timeout=2.0, message="the heartbeat to stop the handler")
    assert status(task_id) == Task.Status.CANCELED


def test_a_polling_pool_finds_tasks_and_cancels_without_listening(start_pool):
    """TASKING_WAKEUPS=poll: no listener; an idle pool finds a task within its poll interval,
    and a cancel stops the run at the next heartbeat refresh."""
    pool = start_pool(workers=1, wakeups="poll", poll_interval=0.2)
    assert pool.listener is None and pool.alive()
    enqueued = time.monotonic()
    task_id = client.enqueue("test.gate", {"gate": "never"})
    wait_until(lambda: task_id in run_ids(), timeout=5, message="the poll to find the task")
    assert recorder.runs[0]["started"] - enqueued < 0.2 + 1.0
    canceled = time.monotonic()
    client.cancel(task_id)
    wait_until(lambda: pool.running() == [], timeout=5, message="the heartbeat to stop the handler")
    assert time.monotonic() - canceled < pool.conf.heartbeat_interval + 1.0
    assert status(task_id) == Task.Status.CANCELED


def test_a_run_that_lost_its_task_is_stopped_and_cannot_finish_it(start_pool):
    """A stalled run whose task was rescued by another pool learns it at its next heartbeat."""
    pool = start_pool(workers=1, types=["test.ignores_cancel"])
    task_id = client.enqueue("test.ignores_cancel")
    wait_until(lambda: task_id in run_ids(), message="the first run")
    first_token = Task.objects.get(pk=task_id).token
    # Another pool's rescue requeues it from under the run.
    assert queue.requeue(task_id, first_token, count_retry=True) == Task.Status.PENDING
    wait_until(lambda: len(recorder.runs) == 2, message="the second run")
    second = Task.objects.get(pk=task_id)
    assert second.token != first_token and second.status == Task.Status.RUNNING
    assert second.retries == 1
    client.cancel(task_id)
    wait_until(lambda: pool.running() == [], message="the second run to stop")
    assert status(task_id) == Task.Status.CANCELED


def test_a_run_rescued_and_claimed_again_by_its_own_pool_is_stopped(start_pool):
    """A stalled pool's run is rescued and the same pool claims the task again: the old run is
    stopped, and its end does not make the pool forget the new one."""
    pool = start_pool(workers=2, types=["test.ignores_cancel"])
    task_id = client.enqueue("test.ignores_cancel")
    wait_until(lambda: task_id in run_ids(), message="the first run")
    [first] = pool.running()
    assert queue.requeue(task_id, first.run.token, count_retry=True) == Task.Status.PENDING
    wait_until(lambda: len(recorder.runs) == 2, message="the second run")
    wait_until(lambda: first.stop_reason == StopReason.LOST, timeout=1.0, message="the first run to be stopped")
    second_token = Task.objects.get(pk=task_id).token
    wait_until(
        lambda: [context.run.token for context in pool.running()] == [second_token],
        message="the first run's end to be recorded, the second run still held",
    )
    client.cancel(task_id)  # reaches the second run: the pool still holds it
    wait_until(lambda: pool.running() == [], message="the second run to stop")
    assert status(task_id) == Task.Status.CANCELED


def test_a_handler_exception_without_a_readable_message_fails_its_task_only(start_pool):
    start_pool(workers=1, types=["test.unprintable", "test.record"])
    task_id = client.enqueue("test.unprintable")
    assert wait_for_status(task_id, Task.Status.FAILED).error == "Unprintable: (its message could not be read)"
    follow_up = client.enqueue("test.record")
    wait_for_status(follow_up, Task.Status.COMPLETED)


def test_a_dead_workers_task_is_rescued_and_run_again(start_pool):
    beat = HeartbeatFactory(task__type="test.record", age=30)
    start_pool(workers=1)
    task = wait_for_status(beat.task_id, Task.Status.COMPLETED)
    assert task.retries == 1
    assert run_ids() == [beat.task_id]


def test_a_requeueable_failure_is_retried_until_the_cap(start_pool, settings):
    settings.TASKING = {**settings.TASKING, "RETRY_WAIT_UPPER_BOUND": 0.0}
    start_pool(workers=1)
    task_id = client.enqueue("test.flaky")
    wait_until(lambda: len(recorder.runs) == 4, timeout=15, message="four runs")
    task = wait_for_status(task_id, Task.Status.FAILED)
    assert (task.retries, task.next_retry_time) == (3, None)
    assert task.error == "RuntimeError: flaky failure"
    time.sleep(1.5)  # one more retry period: no fifth run
    assert len(recorder.runs) == 4


@pytest.mark.timeout(60)
def test_two_pools_never_run_a_task_twice(start_pool):
    ids = {client.enqueue("test.record", {"n": n}) for n in range(300)}
    start_pool(workers=4)
    start_pool(workers=4)
    wait_until(lambda: Task.objects.filter(status=Task.Status.COMPLETED).count() == 300, timeout=30, message="all done")
    assert sorted(map(str, run_ids())) == sorted(map(str, ids))


def test_stop_requeues_a_running_task_without_using_a_retry(start_pool):
    pool = start_pool(workers=1)
    task_id = client.enqueue("test.gate", {"gate": "never"})
    wait_until(lambda: task_id in run_ids(), message="the task to start")
    pool.stop(grace=0.5)
    task = Task.objects.get(pk=task_id)
    assert (task.status, task.retries, task.token, task.started_at) == (Task.Status.PENDING, 0, None, None)
    assert not Heartbeat.objects.exists()


def test_update_payload_saves_progress_for_the_next_run(start_pool):
    start_pool(workers=1, types=["test.progress"])
    task_id = client.enqueue("test.progress", {"step": 41})
    assert wait_for_status(task_id, Task.Status.COMPLETED).payload == {"step": 42}


def test_stop_requeues_a_handler_that_outlives_the_grace_period(start_pool):
    pool = start_pool(workers=1)
    task_id = client.enqueue("test.stubborn", {"gate": "never"})
    wait_until(lambda: task_id in run_ids(), message="the task to start")
    stopping = time.monotonic()
    pool.stop(grace=0.5)
    assert time.monotonic() - stopping < 3
    task = Task.objects.get(pk=task_id)
    assert (task.status, task.retries) == (Task.Status.PENDING, 0)
    # The stubborn run, when it returns at last, can change nothing.
    recorder.gate("never").set()
    wait_until(
        lambda: not any(thread.name.startswith("worker-") for thread in threading.enumerate()),
        message="the stubborn worker to end",
    )
    assert status(task_id) == Task.Status.PENDING


def test_a_task_longer_than_the_heartbeat_timeout_is_not_rescued(start_pool):
    """The original's heartbeat timer could stop for good, so long tasks were run twice."""
    start_pool(workers=1)
    task_id = client.enqueue("diagnostics.sleep", {"seconds": 2.5})  # the timeout is 1 s
    task = wait_for_status(task_id, Task.Status.COMPLETED)
    assert task.retries == 0


def test_a_handler_raising_a_base_exception_fails_its_task_only(start_pool):
    """The original recorded a non-error panic as completed."""
    start_pool(workers=1)
    task_id = client.enqueue("test.exits")
    failed = wait_for_status(task_id, Task.Status.FAILED)
    assert failed.error == "SystemExit: handler called sys.exit"
    after = client.enqueue("test.record")
    wait_for_status(after, Task.Status.COMPLETED)


def test_the_pool_reconnects_and_resubscribes_after_its_connections_are_killed(start_pool):
    pool = start_pool(workers=2)
    first = client.enqueue("test.record", {"n": 1})
    wait_for_status(first, Task.Status.COMPLETED)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] >= 2  # at least the listener and the dispatcher
    # A task enqueued now is picked up: by the notification once the listener is back, or
    # by the re-check the listener asks for after it re-subscribes.
    second = client.enqueue("test.record", {"n": 2})
    wait_for_status(second, Task.Status.COMPLETED, timeout=SAFETY_RECHECK)
    wait_until(pool.listener.subscribed.is_set, message="the listener to re-subscribe")
    third = client.enqueue("test.record", {"n": 3})
    enqueued = time.monotonic()
    wait_for_status(third, Task.Status.COMPLETED, timeout=SAFETY_RECHECK)
    assert time.monotonic() - enqueued < 1.0


def test_the_dispatcher_rests_while_the_pool_drains(start_pool):
    """During the grace period the dispatcher has nothing to claim: it must wait, not spin."""
    pool = start_pool(workers=2, types=["test.stubborn"])
    task_id = client.enqueue("test.stubborn", {"gate": "slow"})
    wait_until(lambda: task_id in run_ids(), message="the task to start")
    dispatcher = next(thread for thread in threading.enumerate() if thread.name == "dispatcher")
    stopper = threading.Thread(target=pool.stop, kwargs={"grace": 1.0})
    cpu_before = time.thread_time()  # this thread's CPU: a reference that is not spinning
    process_before = time.process_time()
    stopper.start()
    wait_until(lambda: all(context.stop_requested for context in pool.running()), message="the pool to drain")
    pool.wake()  # a notification arrives while the pool drains
    time.sleep(0.8)  # inside the grace period
    spent = (time.process_time() - process_before) - (time.thread_time() - cpu_before)
    recorder.gate("slow").set()
    stopper.join(timeout=10)
    assert not dispatcher.is_alive()
    assert spent < 0.4, f"the pool used {spent:.2f}s of CPU in 0.8s of grace"


def claim_one_behind_a_busy_worker(pool, waiting_type: str, waiting_payload=None):
    """Make a 1-worker pool claim a run ahead of its worker, which then stays busy.

    Short runs let the pool claim ahead: queued with a busy task and a waiting one, behind
    them in priority, the first short run is claimed alone, and once it ended the next step
    claims the rest together, ahead of the worker. Returns the busy and the waiting ids."""
    with transaction.atomic():
        for _ in range(3):
            client.enqueue("test.record", priority=2)
        busy = client.enqueue("test.gate", {"gate": "busy"}, priority=1)
        waiting = client.enqueue(waiting_type, waiting_payload)
    wait_until(lambda: busy in run_ids(), message="the busy task to start")
    wait_until(lambda: waiting in {c.task.id for c in pool.running()}, message="the pool to claim ahead")
    return busy, waiting


def test_a_run_claimed_ahead_goes_back_to_the_queue_when_no_worker_takes_it(start_pool, caplog):
    """Claiming ahead must not hold a task behind a long run while another pool could run it."""
    pool = start_pool(workers=1, types=["test.record", "test.gate"])
    with caplog.at_level(logging.INFO, logger="tasks.pool"):
        busy, waiting = claim_one_behind_a_busy_worker(pool, "test.record")
        given_back = time.monotonic()
        wait_until(
            lambda: Task.objects.filter(pk=waiting, status=Task.Status.PENDING, token=None).exists(),
            timeout=AHEAD_HOLD + 2,
            message="the waiting task to go back to the queue",
        )
        assert time.monotonic() - given_back < AHEAD_HOLD + 1
        line = f"task given back to the queue: claimed ahead, no worker took it in time task_id={waiting}"
        wait_until(lambda: line in caplog.text, message="the line logged once the give-back is written")
    start_pool(workers=1, types=["test.record"])
    task = wait_for_status(waiting, Task.Status.COMPLETED)
    assert task.retries == 0
    assert run_ids().count(waiting) == 1
    assert status(busy) == Task.Status.RUNNING
    recorder.gate("busy").set()


def test_a_run_canceled_before_a_worker_takes_it_never_starts(start_pool):
    pool = start_pool(workers=1, types=["test.record", "test.gate"])
    busy, waiting = claim_one_behind_a_busy_worker(pool, "test.gate", {"gate": "waiting"})
    client.cancel(waiting)
    wait_until(
        lambda: any(c.task.id == waiting and c.stop_requested for c in pool.running()), message="the stop request"
    )
    recorder.gate("busy").set()  # the worker is free, and takes the canceled run first
    wait_for_status(busy, Task.Status.COMPLETED)
    follow_up = client.enqueue("test.record")
    wait_for_status(follow_up, Task.Status.COMPLETED)
    assert waiting not in run_ids()
    assert status(waiting) == Task.Status.CANCELED
    assert not Heartbeat.objects.exists()


@pytest.mark.django_db
def test_the_listener_connection_probes_a_silent_peer():
    """A listener on a connection dropped silently (NAT idle timeout) must notice: TCP
    keepalives make the kernel fail the connection, and the listener reconnects."""
    from tasks.listener import KEEPALIVES, listen_connection, listen_params

    assert listen_params().items() >= KEEPALIVES.items()
    if not connection.settings_dict["HOST"] or connection.settings_dict["HOST"].startswith("/"):
        pytest.skip("the test database is on a Unix socket, where TCP keepalives do not apply")
    with listen_connection() as conn:
        probe = socket.socket(fileno=os.dup(conn.fileno()))
        try:
            assert probe.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert probe.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == KEEPALIVES["keepalives_idle"]
            assert probe.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == KEEPALIVES["keepalives_count"]
        finally:
            probe.close()


def test_a_pool_is_alive_from_its_start_to_its_stop(start_pool):
    pool = start_pool(workers=2)
    assert pool.alive()
    pool.stop(grace=0.5)
    assert not pool.alive()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the dispatcher's death
def test_the_stop_records_the_ends_left_by_a_dispatcher_that_died(start_pool, monkeypatch):
    """A dispatcher killed by an unexpected error while writing a step must not keep the stop
    from recording the ends that came after: their tasks would run again once their
    heartbeats expired."""
    pool = start_pool(workers=2, types=["test.gate"])
    client.enqueue("test.gate", {"gate": "first"})
    second = client.enqueue("test.gate", {"gate": "second"})
    wait_until(lambda: len(pool.running()) == 2, message="both tasks to run")
    real = queue.finish_and_claim

    def broken(outcomes, *args, **kwargs):
        if outcomes:
            raise RuntimeError("a bug in the dispatcher")
        return real(outcomes, *args, **kwargs)

    monkeypatch.setattr(queue, "finish_and_claim", broken)
    recorder.gate("first").set()
    wait_until(lambda: not pool._dispatcher.is_alive(), message="the dispatcher to die")
    monkeypatch.setattr(queue, "finish_and_claim", real)
    recorder.gate("second").set()
    wait_until(
        lambda: all(context.ended for context in pool.running() if context.task.id == second),
        message="the second handler to end",
    )

    pool.stop(grace=1.0)

    assert Task.objects.get(pk=second).status == Task.Status.COMPLETED
    assert not Heartbeat.objects.filter(task_id=second).exists()
