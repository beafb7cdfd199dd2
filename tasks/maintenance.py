"""The operator's jobs on the queue: the cleanup of old tasks (run by every pool's janitor, one
pool at a time, and by `manage.py tasks cleanup`), the retry of failed tasks and the cancel
of every task of a type (the original's one-off jobs), and the queue's figures.

Every write goes through tasks.queue, on the paths that the pools, the admin and
tasks.client take: fenced, in short transactions, never waiting for a task row.
"""

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, F
from django.db.models.functions import Now

from tasks import queue, registry
from tasks.exceptions import TaskAlreadyQueued, TaskBusy, TaskNotFound
from tasks.models import Heartbeat, Task

# Tasks a cleanup transaction deletes at most (and tasks each window reads).
CLEANUP_BATCH = 500


@dataclass
class Cleanup:
    """A pass of the cleanup over the tasks older than the shortest retention, oldest first, a
    window of CLEANUP_BATCH at a time: each window is read without locks, and its due tasks are
    deleted in a transaction of their own under the cleanup's advisory lock. A pass whose batch
    finds that lock taken ends (`preempted`): another cleanup is at work, and none waits.

    A dry run reads the same windows and deletes nothing.
    """

    dry_run: bool = False
    # How many tasks of each (type, status) were deleted (or, in a dry run, would be).
    deleted: Counter[tuple[str, str]] = field(default_factory=Counter)
    finished: bool = False
    preempted: bool = False
    _after: tuple[datetime, uuid.UUID] = queue.CLEANUP_START

    @property
    def over(self) -> bool:
        return self.finished or self.preempted

    def step(self) -> None:
        """Clean the next window. Raises TaskBusy (and ends nothing) when the batch waited too
        long for a row of another table that references one of its tasks."""
        window = queue.cleanup_window(self._after, CLEANUP_BATCH, *cleanup_ages())
        due = [row for row in window if row["due"]]
        if due and self.dry_run:
            self.deleted.update((row["type"], row["status"]) for row in due)
        elif due:
            deleted = queue.cleanup_delete(due)
            if deleted is None:
                self.preempted = True
                return
            self.deleted.update(deleted)
        if len(window) < CLEANUP_BATCH:
            self.finished = True
        else:
            self._after = (window[-1]["queued_at"], window[-1]["id"])

    @property
    def total(self) -> int:
        return sum(self.deleted.values())

    def by_status(self) -> str:
        """`completed=3 failed=1`: how many of each status, whatever their type."""
        totals: Counter[str] = Counter()
        for (_, status), count in self.deleted.items():
            totals[status] += count
        return " ".join(f"{status}={count}" for status, count in sorted(totals.items()))


def cleanup_ages() -> tuple[dict[str, queue.Ages], queue.Ages]:
    """The retention of each registered type, and the default, as tasks.queue takes them."""
    return {type_: _ages(retention) for type_, retention in registry.retentions().items()}, _ages(
        registry.DEFAULT_RETENTION
    )


def _ages(retention: registry.Retention) -> queue.Ages:
    kept = (retention.completed, retention.failed, retention.canceled)
    completed, failed, canceled = (None if age is None else age.total_seconds() for age in kept)
    return completed, failed, canceled


@dataclass(frozen=True)
class Retried:
    requeued: list[uuid.UUID]
    # Failed tasks that were not requeued: no longer failed, or held by another transaction.
    skipped: list[uuid.UUID]
    # Failed tasks left failed because another task that may still run holds their unique key.
    key_held: list[uuid.UUID]
    # Failed tasks a user canceled (their failure made final): never retried.
    canceled: int


def retry_failed(*, type: str, hours: float) -> Retried:
    """Put back to pending the failed tasks of `type` that ended in the last `hours` (by the
    database's clock), with no retry used, as the admin's requeue does."""
    recent = Task.objects.filter(
        type=type, status=Task.Status.FAILED, finished_at__gte=Now() - timedelta(hours=hours)
    ).order_by("seq")
    canceled = recent.filter(cancel_attempted=True).count()
    candidates = list(recent.filter(cancel_attempted=False).values_list("id", flat=True))
    requeued: list[uuid.UUID] = []
    key_held: list[uuid.UUID] = []
    for task_id in candidates:
        try:
            if queue.requeue_failed(task_id) == Task.Status.FAILED:
                requeued.append(task_id)
        except TaskAlreadyQueued:
            key_held.append(task_id)
        except (TaskBusy, TaskNotFound):
            pass  # skipped: another transaction holds it, or it is gone
    done = {*requeued, *key_held}
    skipped = [i for i in candidates if i not in done]
    return Retried(requeued=requeued, skipped=skipped, key_held=key_held, canceled=canceled)


@dataclass(frozen=True)
class Canceled:
    # (task id, the status it had) of the tasks this call canceled.
    canceled: list[tuple[uuid.UUID, str]]
    # (task id, its status) of those that had ended by their turn: canceled by the cascade of
    # an earlier one, or finished.
    ended: list[tuple[uuid.UUID, str]]
    # Those another transaction held for longer than a cancel waits (tasks.queue.cancel).
    busy: list[uuid.UUID]


def cancelable(*, type: str, org: str | None) -> list[tuple[uuid.UUID, str]]:
    """The pending and running tasks of `type` (of `org`), oldest first, with their status."""
    tasks = Task.objects.filter(type=type, status__in=[Task.Status.PENDING, Task.Status.RUNNING])
    if org is not None:
        tasks = tasks.filter(org_id=org)
    return list(tasks.order_by("seq").values_list("id", "status"))


def cancel_all(*, type: str, org: str | None) -> Canceled:
    """Cancel every pending and running task of `type` (of `org`), and with each its unfinished
    dependents, whatever the type's `cancellable` (an operator's decision, as in the original's
    job); running ones are told to stop, as tasks.client.cancel's are."""
    canceled, ended, busy = [], [], []
    for task_id, _ in cancelable(type=type, org=org):
        try:
            previous = queue.cancel(task_id)
        except TaskBusy:
            busy.append(task_id)
            continue
        except TaskNotFound:
            continue  # deleted meanwhile: nothing to cancel
        if previous in (Task.Status.PENDING, Task.Status.RUNNING):
            canceled.append((task_id, previous))
        else:
            ended.append((task_id, previous))
    return Canceled(canceled=canceled, ended=ended, busy=busy)


@dataclass(frozen=True)
class RunningTask:
    id: uuid.UUID
    type: str
    org_id: str | None
    started_at: datetime | None
    # Seconds since its run's last heartbeat, by the database's clock.
    heartbeat_age: float
    # The `runworkers` process running it, as host:pid (None: claimed outside a pool).
    worker: str | None


@dataclass(frozen=True)
class PendingTask:
    id: uuid.UUID
    type: str
    queued_at: datetime
    # Seconds since it was enqueued, by the database's clock.
    age: float
    # How many of its dependencies have not completed.
    dependencies_left: int


@dataclass(frozen=True)
class Stats:
    # How many tasks of each (type, status).
    counts: dict[tuple[str, str], int]
    oldest_pending: PendingTask | None
    # Running tasks by their heartbeat: live ones (younger than TASKING_HEARTBEAT), stale ones
    # (their worker is dead or stalled; a janitor requeues them).
    live: list[RunningTask]
    stale: list[RunningTask]


def stats(*, heartbeat: float) -> Stats:
    """The queue's figures, read without locks."""
    rows = Task.objects.values("type", "status").annotate(n=Count("*")).order_by()
    counts = {(row["type"], row["status"]): row["n"] for row in rows}
    oldest = (
        Task.objects.filter(status=Task.Status.PENDING)
        .annotate(age=Now() - F("queued_at"))
        .order_by("queued_at", "id")
        .values_list("id", "type", "queued_at", "age", "dependencies_left")
        .first()
    )
    beats = (
        Heartbeat.objects.filter(task__status=Task.Status.RUNNING, task__token=F("token"))
        .annotate(age=Now() - F("heartbeat"))
        .order_by("task__started_at", "task_id")
        .values_list("task_id", "task__type", "task__org_id", "task__started_at", "age", "worker")
    )
    running = [
        RunningTask(id, type_, org, started, age.total_seconds(), worker)
        for id, type_, org, started, age, worker in beats
    ]
    return Stats(
        counts=counts,
        oldest_pending=None if oldest is None else PendingTask(*oldest[:3], oldest[3].total_seconds(), oldest[4]),
        live=[task for task in running if task.heartbeat_age < heartbeat],
        stale=[task for task in running if task.heartbeat_age >= heartbeat],
    )
