"""The worker pool: threads that claim, run and finish tasks, beat for them, and rescue others'.

Threads and the connections they own (each Django connection is per thread):
- dispatcher: the pool's hot path. In one transaction it records the ends of the runs the
  workers finished and claims as many ready tasks as there are idle workers, so that many
  tasks cost a few statements;
- worker-N: runs one handler at a time; it never touches the database for the run's end;
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
from django.db import close_old_connections, connection

from tasks import queue, registry
from tasks.backoff import Backoff
from tasks.conf import TaskingSettings
from tasks.context import StopReason, TaskContext
from tasks.listener import Listener
from tasks.log import task_fields
from tasks.models import Task
from tasks.queue import Ending, Outcome

logger = logging.getLogger(__name__)

# How often an idle pool looks at the queue when no notification comes (a missed NOTIFY).
SAFETY_RECHECK = 5.0
# How long the dispatcher waits for busy workers to end before recording the ends it has.
LINGER = 0.002
# How long a cancel notification for a run not yet registered is remembered.
EARLY_CANCEL_MEMORY = 60.0
# The end of the shutdown grace kept for what follows the handlers (requeue what they left,
# end the threads, exit), so that the process exits within the grace. At most half of it.
STOP_RESERVE = 0.5


class WorkerPool:
    def __init__(self, *, workers: int, types: list[str], conf: TaskingSettings):
        self.worker_count = workers
        self.types = list(types)
        self.conf = conf
        self._handlers = {type_: registry.get(type_) for type_ in self.types}
        self._draining = threading.Event()  # take no new task; the janitor ends
        self._workers_done = threading.Event()  # the dispatcher records what is left and ends
        self._halted = threading.Event()  # heartbeat and listener end too
        self._beat_now = threading.Event()  # refresh heartbeats at once (after a reconnect)
        self._lock = threading.Lock()  # guards _running and _early_cancels
        self._running: dict[uuid.UUID, TaskContext] = {}  # claimed, until their end is recorded
        self._early_cancels: dict[uuid.UUID, float] = {}
        # The dispatcher's condition: idle workers, ends to record, and "the queue may hold tasks".
        self._dispatch = threading.Condition()
        self._idle = workers
        self._outcomes: list[Outcome] = []
        self._may_have_tasks = True
        self._inbox: queue_module.SimpleQueue[TaskContext | None] = queue_module.SimpleQueue()
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
        with self._dispatch:
            self._may_have_tasks = True
            self._dispatch.notify()

    def recheck(self) -> None:
        """Look at the queue and at our runs' state now: notifications may have been missed."""
        self.wake()
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
        """Take no new task, signal the running handlers, give them the `grace` seconds but
        the last STOP_RESERVE, requeue what is left without counting a retry, and close
        every connection, all within `grace` unless the database is slow to answer."""
        deadline = time.monotonic() + grace - min(STOP_RESERVE, grace / 2)
        self._draining.set()
        with self._dispatch:
            self._dispatch.notify()
        for context in self.running():
            context.request_stop(StopReason.SHUTDOWN)
        for _ in self._workers:
            self._inbox.put(None)  # after every claimed task: FIFO
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
        self._workers_done.set()
        with self._dispatch:
            self._dispatch.notify()
        self._dispatcher.join(timeout=max(1.0, deadline - time.monotonic()))
        # Runs still registered: handlers that outlived the grace, claims no worker started.
        for context in self.running():
            self._requeue_for_shutdown(context)
        self._halted.set()
        self._beat_now.set()
        for thread in (self._janitor, self._heartbeat, self._listener):
            thread.join(timeout=5.0)
        connection.close()

    # --- dispatcher ---------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        backoff = Backoff(self._halted)
        next_check = time.monotonic() + SAFETY_RECHECK
        try:
            while True:
                with self._dispatch:
                    self._dispatch.wait_for(self._dispatcher_has_work, timeout=max(0.0, next_check - time.monotonic()))
                    if self._outcomes:
                        # Let the runs that are about to end join this transaction: many short
                        # tasks then cost one write, not one each.
                        self._dispatch.wait_for(self._all_workers_idle, timeout=LINGER)
                    if time.monotonic() >= next_check:  # the safety re-check
                        self._may_have_tasks = True
                        next_check = time.monotonic() + SAFETY_RECHECK
                    outcomes, self._outcomes = self._outcomes, []
                    claiming = not self._draining.is_set() and self._may_have_tasks
                    limit = self._idle if claiming else 0
                    if limit:
                        self._may_have_tasks = False
                if not outcomes and limit == 0:
                    if self._workers_done.is_set():
                        return
                    continue
                try:
                    recorded = queue.finish_and_claim(outcomes, self.types, limit)
                except DatabaseError as exc:
                    logger.warning("recording ends and claiming tasks failed error=%r", exc)
                    with self._dispatch:  # try again; writing an end twice changes nothing
                        self._outcomes[:0] = outcomes
                        self._may_have_tasks = self._may_have_tasks or claiming
                    backoff.failed()
                    continue
                backoff.succeeded()
                self._after_record(outcomes, recorded)
                if len(recorded.claimed) == limit > 0:
                    self.wake()  # a full batch: there may be more
                else:
                    next_check = time.monotonic() + SAFETY_RECHECK
        finally:
            connection.close()

    def _all_workers_idle(self) -> bool:
        return self._idle == self.worker_count

    def _dispatcher_has_work(self) -> bool:
        claimable = self._idle > 0 and self._may_have_tasks and not self._draining.is_set()
        return bool(self._outcomes) or claimable or self._workers_done.is_set()

    def _after_record(self, outcomes: list[Outcome], recorded: queue.Recorded) -> None:
        with self._lock:
            for outcome in outcomes:
                self._running.pop(outcome.run.task.id, None)
        for outcome in outcomes:
            _log_end(outcome, recorded.owned)
        if not recorded.claimed:
            return
        contexts = [TaskContext(run) for run in recorded.claimed]
        with self._lock:
            for context in contexts:
                self._running[context.task.id] = context
                if self._early_cancels.pop(context.task.id, None) is not None:
                    context.request_stop(StopReason.CANCELED)
        with self._dispatch:
            self._idle -= len(contexts)
        for context in contexts:
            self._inbox.put(context)

    # --- workers ------------------------------------------------------------------------

    def _work_loop(self) -> None:
        try:
            while True:
                try:
                    context = self._inbox.get(timeout=1.0)
                except queue_module.Empty:
                    if self._halted.is_set():  # outlived stop(), which requeued its run
                        return
                    continue
                if context is None:  # stop() has no more work for this worker
                    return
                if self._draining.is_set():
                    outcome = Outcome(context.run, Ending.REQUEUE)
                else:
                    close_old_connections()  # as Django does per request: fresh or checked
                    outcome = self._run(context)
                context.ended = True
                with self._dispatch:
                    self._outcomes.append(outcome)
                    self._idle += 1
                    self._dispatch.notify()
        finally:
            connection.close()  # the handlers' connection, if they used one

    def _run(self, context: TaskContext) -> Outcome:
        task = context.task
        handler = self._handlers[task.type]
        logger.info("task started %s retries=%d", task_fields(task), task.retries)
        try:
            handler.function(context)
        except BaseException as exc:  # a handler must never take its worker down
            error = exc
        else:
            return Outcome(context.run, Ending.COMPLETED)
        reason = context.stop_reason
        if reason is StopReason.SHUTDOWN:
            return Outcome(context.run, Ending.REQUEUE)
        if reason is not None:
            logger.info("task stopped %s reason=%s", task_fields(task), reason)
            return Outcome(context.run, Ending.STOPPED)
        logger.warning("task handler raised %s", task_fields(task), exc_info=error)
        return Outcome(context.run, Ending.FAILED, _error_text(error), handler.requeueable)

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
                    if context.ended:
                        continue
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


def _log_end(outcome: Outcome, owned: dict) -> None:
    fields = task_fields(outcome.run.task)
    task_id = outcome.run.task.id
    if outcome.ending is Ending.STOPPED:
        return
    if task_id not in owned:
        logger.info("task end discarded: the run no longer owned its task %s ending=%s", fields, outcome.ending)
    elif outcome.ending is Ending.COMPLETED:
        logger.info("task completed %s", fields)
    elif outcome.ending is Ending.REQUEUE:
        logger.info("task requeued for shutdown %s", fields)
    else:
        retry_at = owned[task_id]
        logger.warning("task failed %s retry_at=%s", fields, retry_at.isoformat() if retry_at else "never")


def _error_text(error: BaseException) -> str:
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
