"""A pool's upkeep, on two threads with a database connection each: the heartbeat of its own
runs (and the stop of those that lost their task), and the rescue of other pools' dead runs
with the retry of failed tasks whose time came."""

import logging
import threading
import time
from collections.abc import Callable

from django.db import Error as DatabaseError
from django.db import connection

from tasks import observers, queue
from tasks.backoff import Backoff
from tasks.conf import TaskingSettings
from tasks.context import StopReason, TaskContext
from tasks.models import Task

logger = logging.getLogger("tasks.pool")


class Janitor:
    def __init__(
        self,
        conf: TaskingSettings,
        *,
        running: Callable[[], list[TaskContext]],
        draining: threading.Event,
        halted: threading.Event,
    ):
        self.conf = conf
        self._running = running  # the pool's runs, until their end is recorded
        self._draining = draining  # the rescue ends
        self._halted = halted  # the heartbeat ends
        self.beat_now = threading.Event()  # refresh at once (after a reconnect)

    def beat_loop(self) -> None:
        """Every heartbeat/3 (or at once when asked): refresh the heartbeats of this pool's
        runs, and stop the runs that no longer own their task (canceled, or rescued)."""
        backoff = Backoff(self._halted)
        try:
            while not self._halted.is_set():
                self.beat_now.wait(self.conf.heartbeat_interval)
                self.beat_now.clear()
                contexts = {context.run.token: context for context in self._running()}
                if not contexts:
                    continue
                try:
                    lost = queue.refresh_heartbeats([context.run for context in contexts.values()])
                    lost_ids = [contexts[token].task.id for token in lost]
                    statuses = dict(Task.objects.filter(pk__in=lost_ids).values_list("id", "status")) if lost else {}
                except DatabaseError as exc:
                    logger.warning("refreshing heartbeats failed error=%r", exc)
                    backoff.failed()
                    continue
                backoff.succeeded()
                for token in lost:
                    context = contexts[token]
                    if context.ended:
                        continue
                    canceled = statuses.get(context.task.id) == Task.Status.CANCELED
                    reason = StopReason.CANCELED if canceled else StopReason.LOST
                    context.request_stop(reason)
                    observers.task_stopped(context.task, reason)
        finally:
            connection.close()

    def rescue_loop(self) -> None:
        """Every heartbeat/3: record the ends stopping pools handed over, requeue the runs of
        dead workers, and take the table's statistics if no pool took them meanwhile; every
        heartbeat: retry the failed tasks whose time came."""
        backoff = Backoff(self._draining)
        next_retry_check = time.monotonic() + self.conf.heartbeat
        try:
            while not self._draining.wait(self.conf.heartbeat_interval):
                try:
                    for task_id, status in queue.requeue_stale(self.conf.heartbeat):
                        observers.task_rescued(task_id, status)
                    if time.monotonic() >= next_retry_check:
                        retried = queue.retry_failed()
                        if retried:
                            observers.tasks_retried(retried)
                        next_retry_check = time.monotonic() + self.conf.heartbeat
                    stats = queue.refresh_stats(self.conf.heartbeat_interval)
                    if stats is not None:
                        observers.stats_read(stats)
                except DatabaseError as exc:
                    logger.warning("janitor pass failed error=%r", exc)
                    backoff.failed()
                    continue
                backoff.succeeded()
        finally:
            connection.close()
