"""The worker pool: threads that claim, run and finish tasks, beat for them, and rescue others'.

Threads and the connections they own (each Django connection is per thread):
- dispatcher: the pool's hot path. In one transaction it records the ends of the runs the
  workers finished and claims ready tasks for the idle workers, and, while runs are short,
  for the busy ones too (see AHEAD_HOLD), so that many tasks cost a few statements;
- worker-N: takes claimed runs from the inbox and runs one handler at a time; it never
  touches the database for the run's end;
- heartbeat: refreshes the heartbeats of this pool's runs and stops runs that lost their task;
- janitor: requeues the tasks of dead workers and retries failed tasks whose time has come;
- listener: one psycopg connection LISTENing for wake-ups and cancellations (tasks.listener);
- the caller's thread: start(), stop(), and the requeue of runs that outlive the grace period.
"""

import logging
import threading
import time
import uuid
from collections import deque
from datetime import datetime

from django.db import Error as DatabaseError
from django.db import close_old_connections, connection

from tasks import queue, registry
from tasks.backoff import Backoff
from tasks.conf import TaskingSettings
from tasks.context import StopReason, TaskContext
from tasks.exceptions import TaskBusy
from tasks.listener import Listener
from tasks.log import current_request_id, task_fields
from tasks.models import Task
from tasks.queue import Ending, Outcome

logger = logging.getLogger(__name__)

# How often an idle pool looks at the queue when no notification comes (a missed NOTIFY).
SAFETY_RECHECK = 5.0
# How long the dispatcher waits for busy workers to end before recording the ends it has.
LINGER = 0.002
# Runs are claimed ahead of the idle workers, so that the workers have their next runs in
# hand while the dispatcher's transaction is on its way: one for each run of the last batch
# that took less than AHEAD_AFTER_RUNS_UNDER seconds (short runs predict short runs), never
# more than there are workers. A run claimed ahead that no worker has started after
# AHEAD_HOLD seconds goes back to the queue without using a retry, for any pool to take.
AHEAD_AFTER_RUNS_UNDER = 0.05
AHEAD_HOLD = 0.5
# How long a cancel notification for a run not yet registered is remembered.
EARLY_CANCEL_MEMORY = 60.0
# An end that another transaction keeps the queue from recording (a caller's open
# transaction holds the task, or a dependent) is tried again after this long, doubling up to
# DEFERRED_RETRY_MAX while it stays held; the run keeps its heartbeat meanwhile.
DEFERRED_RETRY = 0.05
DEFERRED_RETRY_MAX = 1.0
# When a claim found ready tasks that another transaction held (another pool claiming them),
# the pool looks again after this long rather than waiting for a notification.
CONTENDED_RECHECK = 0.05
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
        # One lock for the state the dispatcher and the workers share, with a condition each:
        # the dispatcher waits for ends to record, runs to claim or runs to give back; the
        # workers wait for the inbox.
        dispatch_lock = threading.Lock()
        self._dispatch = threading.Condition(dispatch_lock)
        self._work = threading.Condition(dispatch_lock)
        self._idle = workers  # workers not running a handler
        self._outcomes: list[Outcome] = []
        self._deferred: list[Outcome] = []  # ends to record again at _deferred_at
        self._deferred_at = 0.0
        self._deferred_delay = DEFERRED_RETRY
        self._stop_deadline = float("inf")  # the dispatcher tries deferred ends until then
        self._short_ends = 0  # how many of those runs took less than AHEAD_AFTER_RUNS_UNDER
        self._ahead = 0  # how many runs to claim beyond the idle workers
        self._may_have_tasks = True
        self._given_back: set[uuid.UUID] = set()  # runs of _outcomes given back unstarted
        # Claimed runs no worker has taken yet, in pick order, with the time of their claim;
        # a None tells the worker that takes it to end.
        self._inbox: deque[tuple[TaskContext | None, float]] = deque()
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
        with self._work:  # after every claimed run: the workers requeue those first
            self._inbox.extend((None, 0.0) for _ in self._workers)
            self._work.notify_all()
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._dispatch:
            self._stop_deadline = deadline
            self._workers_done.set()
            self._dispatch.notify()
        self._dispatcher.join(timeout=max(0.0, deadline - time.monotonic()))
        self._settle_ends()
        # Runs still registered whose handler did not end: they outlived the grace.
        for context in self.running():
            if not context.ended:
                self._requeue_for_shutdown(context)
        self._halted.set()
        self._beat_now.set()
        for thread in (self._janitor, self._heartbeat, self._listener):
            thread.join(timeout=5.0)
        connection.close()

    def _settle_ends(self) -> None:
        """Record the ends the dispatcher left (it was backing off from a database error when
        the deadline came), before anything is requeued: a task that ended must not run
        again. What is still held is handed over, as the dispatcher does at its deadline."""
        with self._dispatch:
            if self._dispatcher.is_alive():
                return  # it holds what it is recording; their heartbeats expire if it never does
            left, self._outcomes = self._outcomes, []
        if left:
            try:
                recorded = queue.finish_and_claim(left, [], 0)
            except DatabaseError as exc:
                connection.close()
                logger.error(
                    "could not record %d task ends at shutdown; their heartbeats will expire error=%r", len(left), exc
                )
                return
            self._after_record(left, recorded)
        self._hand_over_deferred()

    # --- dispatcher ---------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        backoff = Backoff(self._halted)
        next_check = time.monotonic() + SAFETY_RECHECK
        try:
            while True:
                with self._dispatch:
                    stop_at = self._stop_deadline if self._workers_done.is_set() else float("inf")
                    wake_at = min(next_check, self._next_hold_end(), self._next_deferred_attempt(), stop_at)
                    timeout = max(0.0, wake_at - time.monotonic())
                    self._dispatch.wait_for(self._dispatcher_has_work, timeout=timeout)
                    if self._outcomes:
                        # Let the runs that are about to end join this transaction: many short
                        # tasks then cost one write, not one each.
                        self._dispatch.wait_for(self._all_workers_idle, timeout=LINGER)
                    if time.monotonic() >= next_check:  # the safety re-check
                        self._may_have_tasks = True
                        next_check = time.monotonic() + SAFETY_RECHECK
                    self._give_back_held_runs()
                    outcomes, self._outcomes = self._outcomes, []
                    if self._deferred and time.monotonic() >= self._deferred_at:
                        outcomes, self._deferred = [*self._deferred, *outcomes], []
                    if outcomes:
                        self._ahead = min(self._short_ends, self.worker_count)
                        self._short_ends = 0
                    claiming = not self._draining.is_set() and self._may_have_tasks
                    limit = max(0, self._claimable()) if claiming else 0
                    if limit:
                        self._may_have_tasks = False
                if not outcomes and limit == 0:
                    if self._workers_done.is_set() and not (self._deferred and self._before_stop_deadline()):
                        self._hand_over_deferred()
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
                if limit == 0:
                    continue  # only ends were recorded: the safety re-check keeps its time
                if len(recorded.claimed) == limit:
                    self.wake()  # a full batch: there may be more
                elif recorded.contended:
                    next_check = time.monotonic() + CONTENDED_RECHECK
                else:
                    next_check = time.monotonic() + SAFETY_RECHECK
        finally:
            connection.close()

    def _hand_over_deferred(self) -> None:
        """At the stop deadline, leave the ends still held by other transactions to the
        janitors of the pools that go on (queue.hand_over_ends): a task that ended must
        not run again, and the pool cannot wait."""
        with self._dispatch:
            held, self._deferred = self._deferred, []
        if not held:
            return
        try:
            handed = queue.hand_over_ends(held)
        except DatabaseError as exc:
            logger.error("could not hand over %d held task ends; their heartbeats will expire error=%r", len(held), exc)
            return
        with self._lock:
            for outcome in held:
                self._unregister(outcome.run)
        for outcome in held:
            if outcome.run.token in handed:
                logger.info("task end handed over to the next janitor pass %s", task_fields(outcome.run.task))

    # The next five are called with the dispatch lock held.

    def _next_deferred_attempt(self) -> float:
        return self._deferred_at if self._deferred else float("inf")

    def _before_stop_deadline(self) -> bool:
        return time.monotonic() < self._stop_deadline

    def _all_workers_idle(self) -> bool:
        return self._idle == self.worker_count

    def _claimable(self) -> int:
        """How many runs to claim now: one per idle worker and as many ahead as the last
        batch allows, less the runs already waiting in the inbox."""
        return self._idle + self._ahead - len(self._inbox)

    def _next_hold_end(self) -> float:
        context, claimed_at = self._inbox[0] if self._inbox else (None, 0.0)
        return claimed_at + AHEAD_HOLD if context is not None else float("inf")

    def _give_back_held_runs(self) -> None:
        """Requeue the runs claimed ahead that no worker took in time: the workers are busy
        with long runs, and another pool may be idle. Claim no more ahead until short runs
        end again."""
        now = time.monotonic()
        while self._inbox and self._next_hold_end() <= now:
            context, _ = self._inbox.popleft()
            assert context is not None  # _next_hold_end() is finite only for a run
            context.ended = True
            self._outcomes.append(Outcome(context.run, Ending.REQUEUE))
            self._given_back.add(context.task.id)
            self._ahead = self._short_ends = 0

    def _dispatcher_has_work(self) -> bool:
        claimable = self._claimable() > 0 and self._may_have_tasks and not self._draining.is_set()
        now = time.monotonic()
        held_too_long = self._next_hold_end() <= now
        deferred_due = self._next_deferred_attempt() <= now
        # Once the workers are done, the dispatcher ends as soon as no end waits to be retried,
        # or at the stop deadline.
        stopping = self._workers_done.is_set() and (not self._deferred or now >= self._stop_deadline)
        return bool(self._outcomes) or claimable or held_too_long or deferred_due or stopping

    def _after_record(self, outcomes: list[Outcome], recorded: queue.Recorded) -> None:
        deferred = {outcome.run.token for outcome in recorded.deferred}
        ended = [outcome for outcome in outcomes if outcome.run.token not in deferred]
        with self._dispatch:
            if recorded.deferred:
                # Held by another transaction (a caller's, while it is open): try again soon,
                # less often while it stays held.
                self._deferred.extend(recorded.deferred)
                self._deferred_at = time.monotonic() + self._deferred_delay
                self._deferred_delay = min(self._deferred_delay * 2, DEFERRED_RETRY_MAX)
            elif outcomes:
                self._deferred_delay = DEFERRED_RETRY
        with self._lock:
            for outcome in ended:
                self._unregister(outcome.run)
        for outcome in ended:
            _log_end(outcome, recorded.owned, given_back=outcome.run.task.id in self._given_back)
        self._given_back.difference_update(outcome.run.task.id for outcome in ended)
        if not recorded.claimed:
            return
        contexts = [TaskContext(run) for run in recorded.claimed]
        with self._lock:
            for context in contexts:
                previous = self._running.get(context.task.id)
                if previous is not None:
                    # A run of ours that stalled, was rescued, and is claimed again by us.
                    previous.request_stop(StopReason.LOST)
                    logger.warning("run no longer owns its task, stopping it %s", task_fields(previous.task))
                self._running[context.task.id] = context
                if self._early_cancels.pop(context.task.id, None) is not None:
                    context.request_stop(StopReason.CANCELED)
        claimed_at = time.monotonic()
        with self._work:
            self._inbox.extend((context, claimed_at) for context in contexts)
            self._work.notify(len(contexts))

    # --- workers ------------------------------------------------------------------------

    def _work_loop(self) -> None:
        try:
            while True:
                with self._work:
                    if not self._work.wait_for(lambda: self._inbox, timeout=1.0):
                        if self._halted.is_set():  # outlived stop(), which requeued its run
                            return
                        continue
                    context, _ = self._inbox.popleft()
                    if context is None:  # stop() has no more work for this worker
                        return
                    self._idle -= 1
                started = time.monotonic()
                if self._draining.is_set():
                    outcome = Outcome(context.run, Ending.REQUEUE)
                elif context.stop_reason is not None:  # canceled or lost before it started
                    fields = task_fields(context.task)
                    logger.info("task stopped before it started %s reason=%s", fields, context.stop_reason)
                    outcome = Outcome(context.run, Ending.STOPPED)
                else:
                    close_old_connections()  # as Django does per request: fresh or checked
                    outcome = self._run(context)
                context.ended = True
                with self._dispatch:
                    self._outcomes.append(outcome)
                    self._short_ends += time.monotonic() - started < AHEAD_AFTER_RUNS_UNDER
                    self._idle += 1
                    self._dispatch.notify()
        finally:
            connection.close()  # the handlers' connection, if they used one

    def _run(self, context: TaskContext) -> Outcome:
        task = context.task
        handler = self._handlers[task.type]
        logger.info("task started %s retries=%d", task_fields(task), task.retries)
        request_id = current_request_id.set(task.request_id)
        try:
            handler.function(context)
        except BaseException as exc:  # a handler must never take its worker down
            error = exc
        else:
            return Outcome(context.run, Ending.COMPLETED)
        finally:
            current_request_id.reset(request_id)
        reason = context.stop_reason
        if reason is StopReason.SHUTDOWN:
            return Outcome(context.run, Ending.REQUEUE)
        if reason is not None:
            logger.info("task stopped %s reason=%s", task_fields(task), reason)
            return Outcome(context.run, Ending.STOPPED)
        if not isinstance(error, handler.failures):
            logger.error("task handler raised an unexpected error %s", task_fields(task), exc_info=error)
        return Outcome(context.run, Ending.FAILED, _error_text(error), handler.requeueable)

    def _unregister(self, run: queue.Run) -> None:
        """Forget a run, not a later run of the same task. Called with self._lock held."""
        context = self._running.get(run.task.id)
        if context is not None and context.run.token == run.token:
            del self._running[run.task.id]

    def _requeue_for_shutdown(self, context: TaskContext) -> None:
        with self._lock:
            self._unregister(context.run)
        fields = task_fields(context.task)
        try:
            status = queue.requeue(context.task.id, context.run.token, count_retry=False)
        except TaskBusy:
            logger.warning("could not requeue a task at shutdown: another transaction holds it %s", fields)
            return
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
                    lost = queue.refresh_heartbeats([context.run for context in contexts.values()])
                    statuses = (
                        dict(
                            Task.objects.filter(pk__in=[contexts[t].task.id for t in lost]).values_list("id", "status")
                        )
                        if lost
                        else {}
                    )
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


def _log_end(outcome: Outcome, owned: dict[uuid.UUID, datetime | None], *, given_back: bool) -> None:
    fields = task_fields(outcome.run.task)
    task_id = outcome.run.task.id
    if outcome.ending is Ending.STOPPED:
        return
    if task_id not in owned:
        logger.info("task end discarded: the run no longer owned its task %s ending=%s", fields, outcome.ending)
    elif outcome.ending is Ending.COMPLETED:
        logger.info("task completed %s", fields)
    elif given_back:
        logger.info("task given back to the queue: claimed ahead, no worker took it in time %s", fields)
    elif outcome.ending is Ending.REQUEUE:
        logger.info("task requeued for shutdown %s", fields)
    else:
        retry_at = owned[task_id]
        retry = retry_at.isoformat() if retry_at else "never"
        logger.warning("task failed %s retry_at=%s error=%s", fields, retry, outcome.error)


def _error_text(error: BaseException) -> str:
    try:
        message = str(error)
    except Exception:  # a handler's exception class may be broken; its task must still end
        message = "(its message could not be read)"
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
