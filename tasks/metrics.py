"""Prometheus metrics of the task framework, fed by the pool's observers (tasks.observers) and
by the table's statistics that one pool at a time takes (tasks.queue.refresh_stats).

The original's metrics keep their names (`content_sources_message_latency`,
`content_sources_message_result_total`, `content_sources_task_stats`,
`content_sources_task_pending_time_average_by_type`); the others are this project's. Each
process has its own registry (prometheus_client's default one): a `runworkers` process counts
what its pool did; the gauges over the table are the same in every process, read from the
stored statistics, so a scrape never reads the table.
"""

import threading
import uuid
from collections.abc import Iterable
from datetime import datetime

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tasks import queue, registry
from tasks.models import Task
from tasks.observers import Observer
from tasks.queue import Ending, Outcome, TableStats

PREFIX = "content_sources_"

MESSAGE_LATENCY = Histogram(
    f"{PREFIX}message_latency",
    "Seconds from a task's enqueue to the start of its run.",
    buckets=(0.5, 1, 60, 300, 1800, 3600, 7200, 10800, 18000, 36000),
)
MESSAGE_RESULT = Counter(
    f"{PREFIX}message_result",
    "Runs whose handler returned (state=success) or failed (state=failed), as recorded; not those "
    "stopped, nor those whose task was canceled or rescued meanwhile.",
    ["state"],
)
RUN_DURATION = Histogram(
    f"{PREFIX}task_run_duration_seconds",
    "How long handlers ran, by task type (every run that started, whatever its end).",
    ["type"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600, 10800),
)
RUNNING = Gauge(f"{PREFIX}running_tasks", "Tasks whose handler runs in this process.")
RESCUES = Counter(
    f"{PREFIX}task_rescues",
    "Runs of dead workers that this process's janitor ended: requeued (status=pending), failed past "
    "their retries (status=failed), or ended as their stopping pool handed over (completed, failed).",
    ["status"],
)
CANCELLATIONS = Counter(f"{PREFIX}task_cancellations", "Running tasks that this process stopped because of a cancel.")
RETRIES = Counter(f"{PREFIX}task_retries", "Failed tasks that this process's janitor put back to pending for a retry.")


class TaskMetrics(Observer):
    """The pool's counters, as an observer (subscribed when the app is ready)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # The runs counted in RUNNING, by token: a pool can run a task again (rescued from its
        # stalled run) before the old run ends.
        self._started: set[uuid.UUID | None] = set()  # (a claimed task always has its token)

    def task_started(self, task: Task) -> None:
        if task.started_at is not None:  # both from the database's clock
            MESSAGE_LATENCY.observe((task.started_at - task.queued_at).total_seconds())
        with self._lock:
            self._started.add(task.token)
        RUNNING.inc()

    def task_ended(self, outcome: Outcome, *, recorded: bool, retry_at: datetime | None) -> None:
        task = outcome.run.task
        with self._lock:
            started = outcome.run.token in self._started
            self._started.discard(outcome.run.token)
        if started:
            RUNNING.dec()
        if outcome.duration is not None:
            RUN_DURATION.labels(task.type).observe(outcome.duration)
        if not recorded:  # canceled or rescued meanwhile: the run's end is not its task's
            return
        if outcome.ending is Ending.COMPLETED:
            MESSAGE_RESULT.labels("success").inc()
        elif outcome.ending is Ending.FAILED:
            MESSAGE_RESULT.labels("failed").inc()

    def task_stopped(self, task: Task, reason: str) -> None:
        if reason == "canceled":
            CANCELLATIONS.inc()

    def task_rescued(self, task_id: uuid.UUID, status: str) -> None:
        RESCUES.labels(status).inc()

    def tasks_retried(self, task_ids: list[uuid.UUID]) -> None:
        RETRIES.inc(len(task_ids))

    def stats_read(self, stats: TableStats) -> None:
        TABLE.stats = stats


class TableCollector(Collector):
    """The gauges over the table, from the statistics last read: nothing is queried here."""

    def __init__(self) -> None:
        self.stats: TableStats | None = None

    def collect(self) -> Iterable[GaugeMetricFamily]:
        stats = self.stats
        if stats is None:  # none taken yet, or not read yet: no figure rather than a false 0
            return
        groups = stats.groups
        pending = [group for group in groups if group.status == Task.Status.PENDING]
        ready = sum(group.ready or 0 for group in pending)
        wait_sum = sum(group.wait_sum or 0.0 for group in pending)
        task_stats = GaugeMetricFamily(
            f"{PREFIX}task_stats",
            "Pending tasks (blocked ones too); the average and oldest wait of the ready ones, in seconds.",
            labels=["label"],
        )
        task_stats.add_metric(["task_stats_pending_count"], sum(group.count for group in pending))
        task_stats.add_metric(["task_stats_average_wait"], wait_sum / ready if ready else 0.0)
        oldest = max((group.oldest_wait or 0.0 for group in pending), default=0.0)
        task_stats.add_metric(["task_stats_oldest_wait"], oldest)
        yield task_stats
        by_type = GaugeMetricFamily(
            f"{PREFIX}task_pending_time_average_by_type",
            "Average wait of the ready tasks of each type, in seconds (0 when none).",
            labels=["task_type"],
        )
        waits = {group.type: (group.wait_sum or 0.0) / group.ready for group in pending if group.ready}
        for type_ in sorted(set(registry.types()) | set(waits)):
            by_type.add_metric([type_], waits.get(type_, 0.0))
        yield by_type
        tasks = GaugeMetricFamily(
            f"{PREFIX}tasks", "Tasks in the table, by status and type.", labels=["status", "type"]
        )
        for group in groups:
            tasks.add_metric([group.status, group.type], group.count)
        yield tasks
        yield GaugeMetricFamily(
            f"{PREFIX}task_stats_taken_timestamp_seconds",
            "When the statistics of the table were taken (the database's clock), in Unix time.",
            value=stats.taken_at.timestamp(),
        )


TABLE = TableCollector()
REGISTRY.register(TABLE)


@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    """`/metrics` of a web process: its registry, with the table's statistics as last taken
    (one row read, whatever the size of the table)."""
    TABLE.stats = queue.stats()
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
