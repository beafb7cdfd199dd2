"""The pool's Prometheus metrics after known sequences of tasks: scraped over HTTP from a real
`runworkers --metrics-port`, or read from this process's registry for a pool run in-process;
and the table's statistics, taken by one session at a time."""

import functools
import re
import signal
import socket
import urllib.request
from datetime import datetime

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tasks import client, queue
from tasks.models import Heartbeat, Task
from tests.factories import HeartbeatFactory
from tests.handlers import recorder
from tests.helpers import wait_until

Samples = dict[tuple[str, frozenset], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def metrics_port(process) -> int:
    return int(re.search(r"metrics_port=(\d+)", process.log()).group(1))


def status(task_id) -> str:
    return Task.objects.values_list("status", flat=True).get(pk=task_id)


def test_a_pool_process_serves_its_metrics_after_a_known_sequence(runworkers):
    process = runworkers("--workers", "2", "--metrics-port", "0")
    port = metrics_port(process)
    noops = [client.enqueue("diagnostics.noop") for _ in range(3)]
    failing = client.enqueue("diagnostics.fail", {"message": "asked to"})
    sleeping = client.enqueue("diagnostics.sleep", {"seconds": 600})
    wait_until(lambda: Heartbeat.objects.filter(task_id=sleeping).exists(), message="the sleep to start")
    wait_until(lambda: status(failing) == Task.Status.FAILED, message="the failure")
    wait_until(lambda: all(status(id_) == Task.Status.COMPLETED for id_ in noops), message="the noops")

    running = scrape(port)
    assert value(running, "content_sources_running_tasks") == 1
    assert value(running, "content_sources_message_result_total", state="success") == 3
    assert value(running, "content_sources_message_result_total", state="failed") == 1

    client.cancel(sleeping)
    wait_until(lambda: "task stopped" in process.log(), message="the sleep to stop")

    def settled() -> Samples | None:
        # The gauges over the table follow within a refresh (every heartbeat/3 here).
        samples = scrape(port)
        counts = {
            (status, type_): value(samples, "content_sources_tasks", status=status, type=type_)
            for status, type_ in [
                ("completed", "diagnostics.noop"),
                ("failed", "diagnostics.fail"),
                ("canceled", "diagnostics.sleep"),
            ]
        }
        ended = value(samples, "content_sources_running_tasks") == 0
        return samples if ended and list(counts.values()) == [3, 1, 1] else None

    samples = wait_until(settled, timeout=10, message="the metrics to settle")
    assert value(samples, "content_sources_message_result_total", state="success") == 3
    assert value(samples, "content_sources_message_result_total", state="failed") == 1
    assert value(samples, "content_sources_task_cancellations_total") == 1
    assert value(samples, "content_sources_message_latency_count") == 5
    assert value(samples, "content_sources_message_latency_bucket", le="60.0") == 5
    for type_, runs in [("diagnostics.noop", 3), ("diagnostics.fail", 1), ("diagnostics.sleep", 1)]:
        assert value(samples, "content_sources_task_run_duration_seconds_count", type=type_) == runs
    # The sleep ran until its cancel, the noops for next to nothing.
    assert value(samples, "content_sources_task_run_duration_seconds_bucket", type="diagnostics.sleep", le="0.01") == 0
    assert value(samples, "content_sources_task_run_duration_seconds_bucket", type="diagnostics.noop", le="1.0") == 3
    assert value(samples, "content_sources_task_stats", label="task_stats_pending_count") == 0
    assert value(samples, "content_sources_task_stats", label="task_stats_oldest_wait") == 0
    # Every served type has its average pending time, 0 without pending tasks.
    assert ("content_sources_task_pending_time_average_by_type", frozenset({("task_type", "introspect")})) in samples
    assert value(samples, "content_sources_task_stats_taken_timestamp_seconds") > 0


def test_the_metrics_server_stops_with_the_pool(runworkers):
    process = runworkers("--metrics-port", "0")
    port = metrics_port(process)
    assert scrape(port)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0, process.log()
    with pytest.raises(OSError):
        scrape(port)


def test_a_metrics_port_in_use_is_a_start_up_error(db):
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CommandError, match=f"--metrics-port: cannot serve on port {port}: "):
            call_command("runworkers", "--metrics-port", str(port))
    with pytest.raises(CommandError, match="--metrics-port must be a port number"):
        call_command("runworkers", "--metrics-port", "70000")


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_rescues_and_retries_are_counted_by_the_janitor(start_pool, settings):
    settings.TASKING = {**settings.TASKING, "RETRY_WAIT_UPPER_BOUND": 0.4}  # retried 0.1 s after a failure
    rescues, retries = (
        sample("content_sources_task_rescues_total", status="pending"),
        sample("content_sources_task_retries_total"),
    )
    dead = HeartbeatFactory(age=30, task__type="test.record").task  # a dead worker's run
    flaky = client.enqueue("test.flaky")

    start_pool(workers=1, types=["test.record", "test.flaky"])

    wait_until(lambda: status(dead.id) == Task.Status.COMPLETED, timeout=10, message="the rescue")
    wait_until(lambda: Task.objects.get(pk=flaky).retries >= 1, timeout=10, message="a retry")
    assert sample("content_sources_task_rescues_total", status="pending") == rescues + 1
    assert sample("content_sources_task_retries_total") >= retries + 1


def take_stats(max_age: float = 0.0) -> dict:
    stats = queue.refresh_stats(max_age)
    assert stats is not None
    return {(group.status, group.type): group for group in stats.groups}


def test_the_statistics_count_by_status_and_type_with_the_waits_of_pending_tasks(transactional_db):
    client.enqueue("diagnostics.sleep", {"seconds": 1})
    blocker = client.enqueue("diagnostics.sleep", {"seconds": 1})
    client.enqueue("diagnostics.noop", dependencies=[blocker])  # blocked: still pending
    client.cancel(client.enqueue("diagnostics.sleep", {"seconds": 1}))
    with connection.cursor() as cursor:
        cursor.execute("UPDATE tasks SET queued_at = queued_at - interval '100 seconds' WHERE id = %s", [blocker])

    groups = take_stats()

    assert {key: group.count for key, group in groups.items()} == {
        ("pending", "diagnostics.sleep"): 2,
        ("pending", "diagnostics.noop"): 1,
        ("canceled", "diagnostics.sleep"): 1,
    }
    sleeps = groups[("pending", "diagnostics.sleep")]
    assert 100 <= sleeps.oldest_wait < 110
    assert 100 <= sleeps.wait_sum < 120
    assert groups[("canceled", "diagnostics.sleep")].wait_sum is None


def test_one_session_at_a_time_takes_the_statistics_and_only_when_they_are_old(transactional_db):
    first = queue.refresh_stats(60.0)
    assert first is not None
    client.enqueue("diagnostics.noop")
    assert queue.refresh_stats(60.0) == first  # young enough: read, not taken again

    params = connection.get_connection_params()
    for key in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(key, None)
    with psycopg.connect(**params) as other:  # another process taking them now
        other.execute("SELECT pg_advisory_xact_lock(hashtext('tasks.task_stats'))")
        assert queue.refresh_stats(0.0) == first
    taken = queue.refresh_stats(0.0)
    assert taken is not None and taken.taken_at > first.taken_at
    assert [(group.status, group.count) for group in taken.groups] == [("pending", 1)]


def test_a_cancel_is_counted_once_however_long_the_handler_takes_to_stop(start_pool):
    cancellations = sample("content_sources_task_cancellations_total")
    canceled = client.enqueue("test.slow_to_stop", {"gate": "slow"})
    beating = client.enqueue("test.slow_to_stop", {"gate": "slow"})  # shows the heartbeats go on
    start_pool(workers=2, types=["test.slow_to_stop"])
    wait_until(lambda: Heartbeat.objects.count() == 2, message="both runs to start")

    client.cancel(canceled)
    wait_until(
        lambda: sample("content_sources_task_cancellations_total") == cancellations + 1, message="the cancel to arrive"
    )

    # The janitor's beats after the cancel find the run no longer owning its task, its handler
    # still running: the same stop, not another cancellation.
    def beat_after(last: datetime) -> bool:
        return Heartbeat.objects.get(task_id=beating).heartbeat > last

    for _ in range(3):
        last = Heartbeat.objects.get(task_id=beating).heartbeat
        wait_until(functools.partial(beat_after, last), message="a beat")
    assert sample("content_sources_task_cancellations_total") == cancellations + 1
    recorder.gate("slow").set()
    wait_until(lambda: status(canceled) == Task.Status.CANCELED and status(beating) == Task.Status.COMPLETED)


def test_a_run_claimed_again_by_its_own_pool_leaves_the_running_gauge_right(start_pool):
    running = sample("content_sources_running_tasks")
    pool = start_pool(workers=2, types=["test.ignores_cancel"])
    task_id = client.enqueue("test.ignores_cancel")
    wait_until(lambda: len(recorder.runs) == 1, message="the first run")
    [first] = pool.running()
    assert queue.requeue(task_id, first.run.token, count_retry=True) == Task.Status.PENDING  # as a rescue does
    wait_until(lambda: len(recorder.runs) == 2, message="the second run, in the same pool")
    second = Task.objects.get(pk=task_id).token
    wait_until(lambda: [context.run.token for context in pool.running()] == [second], message="the first run's end")
    wait_until(lambda: sample("content_sources_running_tasks") == running + 1, message="one run counted")

    client.cancel(task_id)

    wait_until(lambda: sample("content_sources_running_tasks") == running, message="no run counted")


def test_a_run_whose_end_is_discarded_is_no_result(start_pool):
    success = sample("content_sources_message_result_total", state="success")
    start_pool(workers=1, types=["test.ignores_cancel", "test.record"])
    ignores = client.enqueue("test.ignores_cancel")  # returns as if done once told to stop
    wait_until(lambda: len(recorder.runs) == 1, message="the run")
    client.cancel(ignores)
    after = client.enqueue("test.record")  # its end is reported after the first's (one dispatcher)

    wait_until(lambda: status(after) == Task.Status.COMPLETED, message="the next task")
    wait_until(lambda: sample("content_sources_message_result_total", state="success") > success, message="a result")
    assert status(ignores) == Task.Status.CANCELED
    assert sample("content_sources_message_result_total", state="success") == success + 1  # the next task's only
