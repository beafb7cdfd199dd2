"""The worker pool of `manage.py runworkers`: threads that claim, run and finish tasks, beat
for them, and rescue others'; started and stopped here.

Threads and the connections they own (each Django connection is per thread):
- dispatcher (here): the pool's hot path. In one transaction it records the ends of the runs
  the workers finished and claims ready tasks for the idle workers, and, while runs are
  short, for the busy ones too (tasks.handoff), so that many tasks cost a few statements;
- worker-N (here, running tasks.worker.run_task): takes claimed runs from the inbox and runs
  one handler at a time; it never touches the database for the run's end;
- heartbeat and janitor (tasks.janitor): the heartbeats of this pool's runs; the rescue of
  dead runs and the retry of failed tasks;
- listener (tasks.listener): one psycopg connection LISTENing for wake-ups and cancellations,
  with `TASKING_WAKEUPS=listen` (the default). With `poll` there is none: the dispatcher
  looks at the queue every `TASKING_POLL_INTERVAL`, and the heartbeat stops the canceled runs;
- the caller's thread: start(), stop(), and what the stop leaves (ends to record or hand over,
  runs that outlive the grace period to requeue).
"""

import logging
import os
import socket
import threading
import time
import uuid

from django.db import Error as DatabaseError
from django.db import close_old_connections, connection

from tasks import observers, queue, registry
from tasks.backoff import Backoff
from tasks.conf import TaskingSettings
from tasks.context import StopReason, TaskContext
from tasks.exceptions import TaskBusy
from tasks.handoff import Handoff
from tasks.janitor import Janitor
from tasks.listener import Listener
from tasks.log import Fields
from tasks.queue import Ending, Outcome
from tasks.worker import run_task

logger = logging.getLogger(__name__)

# How often an idle pool that listens looks at the queue when no notification comes (a
# missed NOTIFY). A pool that polls looks every TASKING_POLL_INTERVAL instead.
SAFETY_RECHECK = 5.0
# When a claim found ready tasks that another transaction held (another pool claiming them),
# the pool looks again after this long rather than waiting for a notification.
CONTENDED_RECHECK = 0.05
# How long the dispatcher waits for busy workers to end before recording the ends it has.
LINGER = 0.002
# How long a cancel notification for a run not yet registered is remembered.
EARLY_CANCEL_MEMORY = 60.0
# The end of the shutdown grace kept for what follows the handlers (record or hand over the
# ends, requeue what the handlers left, end the threads, exit), so that the process exits
# within the grace. At most half of it.
STOP_RESERVE = 0.5


class WorkerPool:
    def __init__(self, *, workers: int, types: list[str], conf: TaskingSettings):
        self.worker_count = workers
        self.types = list(types)
        self.conf = conf
        # How its heartbeat rows name this process (`manage.py tasks stats` lists pools by it).
        self.identity = f"{socket.gethostname()}:{os.getpid()}"
        self._handlers = {type_: registry.get(type_) for type_ in self.types}
        self._draining = threading.Event()  # take no new task; the janitor ends
        self._halted = threading.Event()  # heartbeat and listener end too
        self._lock = threading.Lock()  # guards _running and _early_cancels
        self._running: dict[uuid.UUID, TaskContext] = {}  # claimed, until their end is recorded
        self._early_cancels: dict[uuid.UUID, float] = {}
        self._handoff = Handoff(workers)
        self._janitor = Janitor(conf, running=self.running, draining=self._draining, halted=self._halted)
        self.listener = Listener(self, self._halted) if conf.wakeups == "listen" else None
        self._recheck_every = SAFETY_RECHECK if self.listener is not None else conf.poll_interval
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="dispatcher", daemon=True)
        self._workers = [
            threading.Thread(target=self._work_loop, name=f"worker-{n}", daemon=True) for n in range(workers)
        ]
        self._upkeep = [
            threading.Thread(target=self._janitor.rescue_loop, name="janitor", daemon=True),
            threading.Thread(target=self._janitor.beat_loop, name="heartbeat", daemon=True),
        ]
        if self.listener is not None:
            self._upkeep.append(threading.Thread(target=self.listener.run, name="listener", daemon=True))

    # --- called by other threads -------------------------------------------------------

    def start(self) -> None:
        for thread in (*self._upkeep, *self._workers, self._dispatcher):
            thread.start()

    def wake(self) -> None:
        """The queue may hold ready tasks (a NOTIFY on `tasks`)."""
        with self._handoff.lock:
            self._handoff.may_have_tasks = True
            self._handoff.dispatch.notify()

    def recheck(self) -> None:
        """Look at the queue and at our runs' state now: notifications may have been missed."""
        self.wake()
        self._janitor.beat_now.set()

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
        if context.request_stop(StopReason.CANCELED):
            observers.task_stopped(context.task, StopReason.CANCELED)

    def alive(self) -> bool:
        """Whether every thread of the pool runs and its listener, if it has one, is
        subscribed: the pool can claim, beat and hear cancels (`runworkers --health-file`)."""
        threads = (*self._upkeep, *self._workers, self._dispatcher)
        subscribed = self.listener is None or self.listener.subscribed.is_set()
        return subscribed and all(thread.is_alive() for thread in threads)

    def running(self) -> list[TaskContext]:
        with self._lock:
            return list(self._running.values())

    def stop(self, grace: float) -> None:
        """Take no new task, signal the running handlers, give them the `grace` seconds but
        the last STOP_RESERVE, record (or hand over) the ends, requeue the runs whose handler
        did not end without counting a retry, and close every connection, all within `grace`
        unless the database is slow to answer."""
        deadline = time.monotonic() + grace - min(STOP_RESERVE, grace / 2)
        handoff = self._handoff
        self._draining.set()
        with handoff.lock:
            handoff.dispatch.notify()
        for context in self.running():
            context.request_stop(StopReason.SHUTDOWN)
        with handoff.lock:  # after every claimed run: the workers requeue those first
            handoff.inbox.extend((None, 0.0) for _ in self._workers)
            handoff.work.notify_all()
        for worker in self._workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
        with handoff.lock:
            handoff.stop_deadline = deadline
            handoff.workers_done = True
            handoff.dispatch.notify()
        self._dispatcher.join(timeout=max(0.0, deadline - time.monotonic()))
        self._settle_ends()
        # Runs still registered whose handler did not end: they outlived the grace.
        for context in self.running():
            if not context.ended:
                self._requeue_for_shutdown(context)
        self._halted.set()
        self._janitor.beat_now.set()
        for thread in self._upkeep:
            thread.join(timeout=5.0)
        connection.close()

    def _settle_ends(self) -> None:
        """Record the ends the dispatcher left (it was backing off from a database error when
        the deadline came, and may sleep on past it), before anything is requeued: a task
        that ended must not run again. What is still held is handed over, as the dispatcher
        does at its deadline."""
        with self._handoff.lock:
            if self._handoff.recording and self._dispatcher.is_alive():
                return  # it holds what it is recording; their heartbeats expire if it never does
            left, self._handoff.outcomes = self._handoff.outcomes, []
        if left:
            try:
                recorded = queue.finish_and_claim(left, [], 0, worker=self.identity)
            except DatabaseError as exc:
                connection.close()
                message = "could not record %d task ends at shutdown; their heartbeats will expire error=%r"
                logger.error(message, len(left), exc)
                return
            self._after_record(left, recorded)
        self._hand_over_deferred()

    def _hand_over_deferred(self) -> None:
        """At the stop deadline, leave the ends still held by other transactions to the
        janitors of the pools that go on (queue.hand_over_ends): a task that ended must
        not run again, and the pool cannot wait."""
        with self._handoff.lock:
            held, self._handoff.deferred = self._handoff.deferred, []
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
                logger.info("task end handed over to the next janitor pass %s", Fields(outcome.run.task))

    def _requeue_for_shutdown(self, context: TaskContext) -> None:
        with self._lock:
            self._unregister(context.run)
        try:
            status = queue.requeue(context.task.id, context.run.token, count_retry=False)
        except TaskBusy:
            logger.warning(
                "could not requeue a task at shutdown: another transaction holds it %s", Fields(context.task)
            )
            return
        except DatabaseError as exc:
            connection.close()
            message = "could not requeue a task at shutdown; its heartbeat will expire %s error=%r"
            logger.error(message, Fields(context.task), exc)
            return
        if status is not None:
            logger.info("task requeued for shutdown %s", Fields(context.task))

    # --- dispatcher ---------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        handoff = self._handoff
        backoff = Backoff(self._halted)
        next_check = time.monotonic() + self._recheck_every
        last_step = 0.0  # how long the last step took, in seconds
        try:
            while True:
                with handoff.lock:
                    stop_at = handoff.stop_deadline if handoff.workers_done else float("inf")
                    wake_at = min(next_check, handoff.next_hold_end(), handoff.next_deferred_attempt(), stop_at)
                    handoff.dispatch.wait_for(
                        lambda: handoff.has_work(self._draining.is_set()), timeout=max(0.0, wake_at - time.monotonic())
                    )
                    if handoff.outcomes:
                        # Let the runs that are about to end join this transaction: many short
                        # tasks then cost one write, not one each.
                        handoff.dispatch.wait_for(handoff.all_workers_idle, timeout=LINGER)
                    if time.monotonic() >= next_check:  # the safety re-check, or the poll
                        handoff.may_have_tasks = True
                        next_check = time.monotonic() + self._recheck_every
                    handoff.give_back_held_runs()
                    outcomes, handoff.outcomes = handoff.outcomes, []
                    if handoff.deferred and time.monotonic() >= handoff.deferred_at:
                        outcomes, handoff.deferred = [*handoff.deferred, *outcomes], []
                    if outcomes:
                        handoff.plan_ahead(last_step + LINGER)
                    claiming = not self._draining.is_set() and handoff.may_have_tasks
                    limit = max(0, handoff.claimable()) if claiming else 0
                    if limit:
                        handoff.may_have_tasks = False
                    stopping = handoff.workers_done and not (
                        handoff.deferred and time.monotonic() < handoff.stop_deadline
                    )
                    handoff.recording = bool(outcomes or limit)
                if not outcomes and limit == 0:
                    if stopping:
                        self._hand_over_deferred()
                        return
                    continue
                try:
                    step_started = time.monotonic()
                    recorded = queue.finish_and_claim(outcomes, self.types, limit, worker=self.identity)
                    last_step = time.monotonic() - step_started
                except DatabaseError as exc:
                    logger.warning("recording ends and claiming tasks failed error=%r", exc)
                    with handoff.lock:  # try again; writing an end twice changes nothing
                        handoff.outcomes[:0] = outcomes
                        handoff.recording = False  # stop() may record them if this backoff outlasts its grace
                        handoff.may_have_tasks = handoff.may_have_tasks or claiming
                    backoff.failed()
                    continue
                backoff.succeeded()
                self._after_record(outcomes, recorded)
                if limit == 0:
                    continue  # only ends were recorded: the re-check keeps its time
                if len(recorded.claimed) == limit:
                    self.wake()  # a full batch: there may be more
                    continue
                with handoff.lock:
                    handoff.ahead = 0  # the ready tasks ran out: claim ahead again once runs end
                if recorded.contended:
                    next_check = time.monotonic() + CONTENDED_RECHECK
                else:
                    next_check = time.monotonic() + self._recheck_every
        finally:
            connection.close()

    def _after_record(self, outcomes: list[Outcome], recorded: queue.Recorded) -> None:
        handoff = self._handoff
        held = {outcome.run.token for outcome in recorded.deferred}
        ended = [outcome for outcome in outcomes if outcome.run.token not in held]
        with handoff.lock:
            handoff.recording = False
            if outcomes:
                handoff.defer(recorded.deferred)
            given_back = {o.run.task.id for o in ended if o.run.task.id in handoff.given_back}
            handoff.given_back.difference_update(given_back)
        with self._lock:
            for outcome in ended:
                self._unregister(outcome.run)
        for outcome in ended:
            if outcome.run.task.id in given_back:
                logger.info(
                    "task given back to the queue: claimed ahead, no worker took it in time %s",
                    Fields(outcome.run.task),
                )
            else:
                owned = outcome.run.task.id in recorded.owned
                observers.task_ended(outcome, recorded=owned, retry_at=recorded.owned.get(outcome.run.task.id))
        if not recorded.claimed:
            return
        contexts = [TaskContext(run) for run in recorded.claimed]
        with self._lock:
            for context in contexts:
                previous = self._running.get(context.task.id)
                if previous is not None:
                    # A run of ours that stalled, was rescued, and is claimed again by us.
                    if previous.request_stop(StopReason.LOST):
                        observers.task_stopped(previous.task, StopReason.LOST)
                self._running[context.task.id] = context
                if self._early_cancels.pop(context.task.id, None) is not None:
                    if context.request_stop(StopReason.CANCELED):
                        observers.task_stopped(context.task, StopReason.CANCELED)
        claimed_at = time.monotonic()
        with handoff.lock:
            handoff.inbox.extend((context, claimed_at) for context in contexts)
            handoff.work.notify(len(contexts))

    # --- workers ------------------------------------------------------------------------

    def _work_loop(self) -> None:
        handoff = self._handoff
        try:
            while True:
                with handoff.lock:
                    if not handoff.work.wait_for(lambda: handoff.inbox, timeout=1.0):
                        if self._halted.is_set():  # outlived stop(), which requeued its run
                            return
                        continue
                    context, _ = handoff.inbox.popleft()
                    if context is None:  # stop() has no more work for this worker
                        return
                    handoff.idle -= 1
                ran: float | None = None  # how long the run ran, if it started
                if self._draining.is_set():
                    outcome = Outcome(context.run, Ending.REQUEUE)
                elif context.stop_reason is not None:  # canceled or lost before it started
                    outcome = Outcome(context.run, Ending.STOPPED)
                else:
                    started = time.monotonic()
                    close_old_connections()  # as Django does per request: fresh or checked
                    outcome = run_task(context, self._handlers[context.task.type])
                    ran = time.monotonic() - started
                context.ended = True
                with handoff.lock:
                    handoff.ended(outcome, ran)
        finally:
            connection.close()  # the handlers' connection, if they used one

    def _unregister(self, run: queue.Run) -> None:
        """Forget a run, not a later run of the same task. Called with self._lock held."""
        context = self._running.get(run.task.id)
        if context is not None and context.run.token == run.token:
            del self._running[run.task.id]
