"""What a pool's dispatcher and its workers share: the inbox of claimed runs, the ends to
record, how many workers are idle, and how many runs to claim ahead of them.

The rule: one lock guards every field below, and whoever reads or writes one holds it
(`with handoff.lock`). The dispatcher waits on `dispatch` (ends to record, runs to claim or
to give back, the stop); the workers wait on `work` (the inbox). Nothing is done with the
lock held but reading and writing these fields: no database call, no handler, no observer.
"""

import threading
import time
from collections import deque

from tasks.context import TaskContext
from tasks.queue import Ending, Outcome

# Runs are claimed ahead of the idle workers, so that the workers have their next runs in
# hand while the dispatcher's next step is on its way: twice as many as the workers that ran
# runs since the last step will finish meanwhile at the pace of those runs (a step's
# statements cost about the same for 8 tasks as for 50, so short runs are best claimed many
# at a time; runs as long as a step get a few, longer ones none), never more than
# AHEAD_PER_WORKER per worker: a pool holds at most (1 + AHEAD_PER_WORKER) x workers runs.
# None is claimed ahead once a claim finds fewer ready tasks than it asked for, until runs
# end again. A run claimed ahead that no worker has started after AHEAD_HOLD seconds goes
# back to the queue without using a retry, for any pool to take.
AHEAD_PER_WORKER = 8
AHEAD_HOLD = 0.5
# An end that another transaction keeps the queue from recording (a caller's open
# transaction holds the task, or a dependent) is tried again after this long, doubling up to
# DEFERRED_RETRY_MAX while it stays held; the run keeps its heartbeat meanwhile.
DEFERRED_RETRY = 0.05
DEFERRED_RETRY_MAX = 1.0


class Handoff:
    def __init__(self, workers: int):
        self.workers = workers
        self.lock = threading.Lock()
        self.dispatch = threading.Condition(self.lock)
        self.work = threading.Condition(self.lock)
        self.idle = workers  # workers not running a handler
        # Claimed runs no worker has taken yet, in pick order, with the time of their claim;
        # a None tells the worker that takes it to end.
        self.inbox: deque[tuple[TaskContext | None, float]] = deque()
        self.outcomes: list[Outcome] = []  # ends to record at the next step
        self.deferred: list[Outcome] = []  # ends held by another transaction, tried at deferred_at
        self.deferred_at = 0.0
        self.deferred_delay = DEFERRED_RETRY
        self.ended_runs = 0  # runs ended since the last step
        self.run_seconds = 0.0  # and how long they ran, in all
        self.ahead = 0  # how many runs to claim beyond the idle workers
        self.may_have_tasks = True  # a notification, or the safety re-check, says look
        self.given_back: set[object] = set()  # task ids of runs claimed ahead and given back
        self.recording = False  # the dispatcher is writing a step: the ends it took are its own
        self.workers_done = False  # stop() has no more worker: the dispatcher records what is left
        self.stop_deadline = float("inf")  # the dispatcher tries deferred ends until then

    # Each method below is called with the lock held.

    def claimable(self) -> int:
        """How many runs to claim now: one per idle worker and as many ahead as the last
        batch allows, less the runs already waiting in the inbox."""
        return self.idle + self.ahead - len(self.inbox)

    def all_workers_idle(self) -> bool:
        return self.idle == self.workers

    def next_hold_end(self) -> float:
        context, claimed_at = self.inbox[0] if self.inbox else (None, 0.0)
        return claimed_at + AHEAD_HOLD if context is not None else float("inf")

    def next_deferred_attempt(self) -> float:
        return self.deferred_at if self.deferred else float("inf")

    def give_back_held_runs(self) -> None:
        """Requeue the runs claimed ahead that no worker took in time: the workers are busy
        with long runs, and another pool may be idle. Claim no more ahead until short runs
        end again."""
        now = time.monotonic()
        while self.inbox and self.next_hold_end() <= now:
            context, _ = self.inbox.popleft()
            assert context is not None  # next_hold_end() is finite only for a run
            context.ended = True
            self.outcomes.append(Outcome(context.run, Ending.REQUEUE))
            self.given_back.add(context.task.id)
            self.ahead = self.ended_runs = 0
            self.run_seconds = 0.0

    def has_work(self, draining: bool) -> bool:
        """Whether the dispatcher has something to do now."""
        claimable = self.claimable() > 0 and self.may_have_tasks and not draining
        now = time.monotonic()
        held_too_long = self.next_hold_end() <= now
        deferred_due = self.next_deferred_attempt() <= now
        # Once the workers are done, the dispatcher ends as soon as no end waits to be
        # retried, or at the stop deadline.
        stopping = self.workers_done and (not self.deferred or now >= self.stop_deadline)
        return bool(self.outcomes) or claimable or held_too_long or deferred_due or stopping

    def defer(self, held: list[Outcome]) -> None:
        """Keep ends another transaction held, to try again soon, less often while they stay held."""
        if held:
            self.deferred.extend(held)
            self.deferred_at = time.monotonic() + self.deferred_delay
            self.deferred_delay = min(self.deferred_delay * 2, DEFERRED_RETRY_MAX)
        else:
            self.deferred_delay = DEFERRED_RETRY

    def ended(self, outcome: Outcome, seconds: float | None) -> None:
        """A worker's run ended after `seconds` (None: it never started, stopped or requeued
        before): its end is to record, the worker is idle again."""
        self.outcomes.append(outcome)
        if seconds is not None:
            self.ended_runs += 1
            self.run_seconds += seconds
        self.idle += 1
        self.dispatch.notify()

    def plan_ahead(self, step_seconds: float) -> None:
        """How many runs to claim ahead of the next step, which should take `step_seconds`
        (see AHEAD_PER_WORKER); judged by the runs that ended since the last plan."""
        most = AHEAD_PER_WORKER * self.workers
        if self.ended_runs and self.run_seconds > 0:
            runners = min(self.workers, self.ended_runs)
            pace = self.ended_runs / self.run_seconds  # runs per second of a runner
            self.ahead = min(most, int(2 * runners * step_seconds * pace))
        else:
            self.ahead = most if self.ended_runs else 0
        self.ended_runs, self.run_seconds = 0, 0.0
