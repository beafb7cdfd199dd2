"""The worker pool: threads that claim, run and finish tasks, beat for them, and rescue others'.

Threads and the connections they own (each Django connection is per thread):
- dispatcher: claims as many ready tasks as there are idle workers, in one statement;
- worker-N: runs one task at a time and finishes it (its own Django connection);
- heartbeat: refreshes the heartbeats of this pool's runs and stops runs that lost their task;
- janitor: requeues the tasks of dead workers and retries failed tasks whose time has come;
- listener: one psycopg connection LISTENing for wake-ups and cancellations (tasks.listener);
- the caller's thread: start(), stop(), and the requeue of runs that outlive the grace period.
"""

import logging
import queue as queue_module
import threading
import time
import uuid

from django.db import Error as DatabaseError
from django.db import InterfaceError, OperationalError, connection

from tasks import queue, registry
from tasks.backoff import Backoff
from tasks.conf import TaskingSettings
from tasks.context import StopReason, TaskContext
from tasks.listener import Listener
from tasks.log import task_fields
from tasks.models import Task

logger = logging.getLogger(__name__)

# How often an idle pool looks at the queue when no notification comes (a missed NOTIFY).
SAFETY_RECHECK = 5.0
# How long a cancel notification for a run not yet registered is remembered.
EARLY_CANCEL_MEMORY = 60.0


class WorkerPool:
    def __init__(self, *, workers: int, types: list[str], conf: TaskingSettings):
        self.worker_count = workers
        self.types = list(types)
        self.conf = conf
        self._handlers = {type_: registry.get(type_) for type_ in self.types}
        self._draining = threading.Event()  # take no new task; dispatcher, janitor and workers end
        self._halted = threading.Event()  # heartbeat and listener end too
        self._wake = threading.Event()  # the queue may hold ready tasks
        self._beat_now = threading.Event()  # refresh heartbeats at once (after a reconnect)
        self._lock = threading.Lock()  # guards _running and _early_cancels
        self._running: dict[uuid.UUID, TaskContext] = {}
        self._early_cancels: dict[uuid.UUID, float] = {}
        self._slots = threading.Condition()  # guards _idle
        self._idle = workers
        self._inbox: queue_module.Queue[TaskContext | None] = queue_module.Queue()
        self.listener = Listener(self, self._halted)
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="dispatcher", daemon=True)
        self._janitor = threading.Thread(target=self._janitor_loop, name="janitor", daemon=True)
        self._workers = [
            threading.Thread(target=self._work_loop, name=f"worker-{n}", daemon=True) for n in range(workers)
        ]
        self._heartbeat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        self._listener = threading.Thread(target=self.listener.run, name="listener", daemon=True)

    # --- called by other threads -------------------------------------------------------

    def start(self) -> None:
        for thread in (self._listener, self._heartbeat, *self._workers, self._janitor, self._dispatcher):
            thread.start()

    def wake(self) -> None:
        """The queue may hold ready tasks (a NOTIFY on `tasks`)."""
        self._wake.set()

    def recheck(self) -> None:
        """Look at the queue and at our runs' state now: notifications may have been missed."""
        self._wake.set()
        self._beat_now.set()

    def cancel(self, task_id: uuid.UUID) -> None:
        """Stop the run of this task if this pool holds it (a NOTIFY on `cancel_task`)."""
        now = time.monotonic()
        with self._lock:
            context = self._running.get(task_id)
            if context is None:
                # The notification can beat the dispatcher's registration of a run it just claimed.
                self._early_cancels = {
                    id_: at for id_, at in self._early_cancels.items() if now - at < EARLY_CANCEL_MEMORY
                }
                self._early_cancels[task_id] = now
                return
        context.request_stop(StopReason.CANCELED)
        logger.info("stopping a canceled task %s", task_fields(context.task))

    def running(self) -> list[TaskContext]:
        with self._lock:
            return list(self._running.values())

    def stop(self, grace: float) -> None:
        """Take no new task, signal the running handlers, wait up to `grace` seconds for them,
        requeue what is left without counting a retry, and close every connection."""
        self._draining.set()
        self._wake.set()
        for context in self.running():
            context.request_stop(StopReason.SHUTDOWN)
        deadline = time.monotonic() + grace
        self._dispatcher.join(timeout=max(grace, 1.0))
        for _ in self._workers:
            self._inbox.put(None)  # after every claimed task: FIFO
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
        leftovers = self.running()
        while not self._inbox.empty():
            if (context := self._inbox.get_nowait()) is not None:
                leftovers.append(context)
        for context in leftovers:
            self._requeue_for_shutdown(context)
        self._halted.set()
        self._beat_now.set()
        for thread in (self._janitor, self._heartbeat, self._listener):
            thread.join(timeout=5.0)
        connection.close()

    # --- dispatcher ---------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        backoff = Backoff(self._draining)
        try:
            while not self._draining.is_set():
                with self._slots:
                    self._slots.wait_for(lambda: self._idle > 0 or self._draining.is_set(), timeout=1.0)
                    idle = self._idle
                if idle == 0 or self._draining.is_set():
                    continue
                self._wake.clear()
                try:
                    runs = queue.claim(self.types, idle)
                except DatabaseError as exc:
                    logger.warning("claiming tasks failed error=%r", exc)
                    backoff.failed()
                    continue
                backoff.succeeded()
                for run in runs:
                    self._hand_out(run)
                if len(runs) < idle:
                    self._wake.wait(SAFETY_RECHECK)
        finally:
            connection.close()

    def _hand_out(self, run: queue.Run) -> None:
        context = TaskContext(run)
        with self._lock:
            self._running[run.task.id] = context
            if self._early_cancels.pop(run.task.id, None) is not None:
                context.request_stop(StopReason.CANCELED)
        with self._slots:
            self._idle -= 1
        self._inbox.put(context)

    # --- workers ------------------------------------------------------------------------

    def _work_loop(self) -> None:
        try:
            while True:
                try:
                    context = self._inbox.get(timeout=1.0)
                except queue_module.Empty:
                    if self._halted.is_set():  # outlived stop(), which took back its sentinel
                        return
                    continue
                if context is None:  # stop() has no more work for this worker
                    return
                if self._draining.is_set():
                    self._requeue_for_shutdown(context)
                else:
                    self._run(context)
                with self._slots:
                    self._idle += 1
                    self._slots.notify()
        finally:
            connection.close()

    def _run(self, context: TaskContext) -> None:
        task = context.task
        handler = self._handlers[task.type]
        logger.info("task started %s retries=%d", task_fields(task), task.retries)
        error = None
        try:
            handler.function(context)
        except BaseException as exc:  # a handler must never take its worker down
            error = exc
        with self._lock:
            self._running.pop(task.id, None)
        self._finish(context, handler, error)

    def _finish(self, context: TaskContext, handler: registry.Handler, error: BaseException | None) -> None:
        task, run, reason = context.task, context.run, context.stop_reason
        fields = task_fields(task)
        backoff = Backoff(self._halted)
        while True:
            try:
                if reason in (StopReason.CANCELED, StopReason.LOST) and error is not None:
                    # The run stopped because it no longer owns its task: nothing to write.
                    logger.info("task stopped %s reason=%s", fields, reason)
                elif error is None:
                    if queue.complete(run):
                        logger.info("task completed %s", fields)
                    else:
                        logger.info("task result discarded: the run lost its task %s reason=%s", fields, reason)
                elif reason is StopReason.SHUTDOWN:
                    self._requeue_for_shutdown(context)
                else:
                    owned, retry_at = queue.fail(run, _error_text(error), requeueable=handler.requeueable)
                    if not owned:
                        logger.info("task failure discarded: the run lost its task %s", fields)
                    else:
                        retry = retry_at.isoformat() if retry_at else "never"
                        logger.warning("task failed %s retry_at=%s", fields, retry, exc_info=error)
                return
            except (OperationalError, InterfaceError) as exc:
                # The database is unreachable: retry, and leave the task to the heartbeat
                # rescue if the pool stops first.
                if self._halted.is_set():
                    logger.error("could not record the end of a task %s error=%r", fields, exc)
                    return
                logger.warning("recording the end of a task failed, retrying %s error=%r", fields, exc)
                backoff.failed()
            except DatabaseError:
                logger.exception("could not record the end of a task %s", fields)
                connection.close()
                return

    def _requeue_for_shutdown(self, context: TaskContext) -> None:
        with self._lock:
            self._running.pop(context.task.id, None)
        fields = task_fields(context.task)
        try:
            status = queue.requeue(context.task.id, context.run.token, count_retry=False)
        except DatabaseError as exc:
            connection.close()
            logger.error("could not requeue a task at shutdown; its heartbeat will expire %s error=%r", fields, exc)
            return
        if status is not None:
            logger.info("task requeued for shutdown %s", fields)

    # --- heartbeat ----------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        backoff = Backoff(self._halted)
        try:
            while not self._halted.is_set():
                self._beat_now.wait(self.conf.heartbeat_interval)
                self._beat_now.clear()
                contexts = {context.run.token: context for context in self.running()}
                if not contexts:
                    continue
                try:
                    lost = queue.refresh_heartbeats(list(contexts))
                    statuses = dict(
                        Task.objects.filter(pk__in=[contexts[t].task.id for t in lost]).values_list("id", "status")
                    ) if lost else {}
                except DatabaseError as exc:
                    logger.warning("refreshing heartbeats failed error=%r", exc)
                    backoff.failed()
                    continue
                backoff.succeeded()
                for token in lost:
                    context = contexts[token]
                    canceled = statuses.get(context.task.id) == Task.Status.CANCELED
                    context.request_stop(StopReason.CANCELED if canceled else StopReason.LOST)
                    logger.warning(
                        "run no longer owns its task, stopping it %s status=%s",
                        task_fields(context.task),
                        statuses.get(context.task.id, "deleted"),
                    )
        finally:
            connection.close()

    # --- janitor ------------------------------------------------------------------------

    def _janitor_loop(self) -> None:
        backoff = Backoff(self._draining)
        next_retry_check = time.monotonic() + self.conf.heartbeat
        try:
            while not self._draining.wait(self.conf.heartbeat_interval):
                try:
                    for task_id, status in queue.requeue_stale(self.conf.heartbeat):
                        logger.warning("task rescued from a dead worker task_id=%s status=%s", task_id, status)
                    if time.monotonic() >= next_retry_check:
                        for task_id in queue.retry_failed():
                            logger.info("failed task requeued for retry task_id=%s", task_id)
                        next_retry_check = time.monotonic() + self.conf.heartbeat
                except DatabaseError as exc:
                    logger.warning("janitor pass failed error=%r", exc)
                    backoff.failed()
                    continue
                backoff.succeeded()
        finally:
            connection.close()


def _error_text(error: BaseException) -> str:
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
