"""A pool's upkeep, on two threads with a database connection each: the heartbeat of its own
runs (and the stop of those that lost their task), and the rescue of other pools' dead runs
with the retry of failed tasks whose time came and the cleanup of old tasks."""

import logging
import math
import threading
import time
from collections.abc import Callable

from django.db import Error as DatabaseError
from django.db import connection

from tasks import observers, queue
from tasks.backoff import Backoff
from tasks.conf import TaskingSettings
from tasks.context import StopReason, TaskContext
from tasks.exceptions import TaskBusy
from tasks.maintenance import Cleanup
from tasks.models import Task

logger = logging.getLogger("tasks.pool")

# How long a janitor pass gives to the cleanup, at most: a long cleanup goes on at the next
# passes, so that the rescues keep their pace.
CLEANUP_SLICE = 1.0


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
                    if context.request_stop(reason):
                        observers.task_stopped(context.task, reason)
        finally:
            connection.close()

    def rescue_loop(self) -> None:
        """Every heartbeat/3: record the ends stopping pools handed over, requeue the runs of
        dead workers, and take the table's statistics if no pool took them meanwhile; every
        heartbeat: retry the failed tasks whose time came; every cleanup interval (the first one
        heartbeat after the start): clean old tasks, a slice of each pass at a time, unless
        another pool's cleanup is at work."""
        backoff = Backoff(self._draining)
        next_retry_check = time.monotonic() + self.conf.heartbeat
        cleaning_every = self.conf.cleanup_interval
        next_cleanup = time.monotonic() + self.conf.heartbeat if cleaning_every > 0 else math.inf
        cleanup: Cleanup | None = None
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
                    if cleanup is None and time.monotonic() >= next_cleanup:
                        cleanup = Cleanup()
                    if cleanup is not None and self._clean(cleanup):
                        cleanup = None
                        next_cleanup = time.monotonic() + cleaning_every
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

    def _clean(self, cleanup: Cleanup) -> bool:
        """Go on with a cleanup pass for up to CLEANUP_SLICE; True once the pass is over."""
        deadline = time.monotonic() + CLEANUP_SLICE
        try:
            while not cleanup.over and time.monotonic() < deadline and not self._draining.is_set():
                cleanup.step()
        except TaskBusy as exc:
            logger.warning("cleanup ended early deleted=%d error=%s", cleanup.total, exc)
            return True
        if not cleanup.over:
            return False
        if cleanup.total:
            logger.info("cleanup deleted=%d %s preempted=%s", cleanup.total, cleanup.by_status(), cleanup.preempted)
        elif cleanup.preempted:
            logger.debug("cleanup left to another pool's")
        return True
