"""Scenario 5: cancels at random moments around dequeue and finish, thousands of times.

Each canceled task ends canceled if the cancel found it pending or running (never
canceled-then-completed), or keeps the status it had; its dependents go with it; nothing
stays running."""

import random
import threading
import time
from collections import Counter

from django.db import connection, transaction

from tasks import client, queue
from tasks.models import Heartbeat, Task
from tasks.queue import PARENT_CANCELED
from tasks.sql import QUERIES
from tests.helpers import wait_until
from tests.reliability import ledger

ROUNDS = 100
PER_ROUND = 20  # 2,000 parent cancels
CHILD_CANCEL_SHARE = 0.3
DURATIONS = [0, 0.002, 0.01, 0.02]
CANCEL_DELAY = 0.01
UNFINISHED = [Task.Status.PENDING, Task.Status.RUNNING]


def test_cancel_at_random_moments_never_leaves_a_task_running_or_completed(fleet, summary):
    pools = fleet("--workers", "2", LOG_LEVEL="WARNING")
    pools.start(wait=False)
    pools.start(wait=False)
    probe = client.enqueue("reliability.work")
    wait_until(lambda: Task.objects.get(pk=probe).status == Task.Status.COMPLETED, timeout=60, message="a pool")

    cancels = []  # (parent, child, what the parent's cancel found, what the child's found or None)
    for _ in range(ROUNDS):
        parents = client.enqueue_many(
            "reliability.work", [{"seconds": random.choice(DURATIONS)} for _ in range(PER_ROUND)]
        )
        children = [client.enqueue("reliability.work", dependencies=[parent]) for parent in parents]
        pairs = list(zip(parents, children, strict=True))
        random.shuffle(pairs)
        for parent, child in pairs:
            time.sleep(random.uniform(0, CANCEL_DELAY))  # a random moment, not a synchronisation
            found = client.cancel(parent)
            child_found = client.cancel(child) if random.random() < CHILD_CANCEL_SHARE else None
            cancels.append((parent, child, found, child_found))

    wait_until(
        lambda: not Task.objects.filter(status__in=UNFINISHED).exists(), timeout=60, message="every task to finish"
    )
    tasks = {task.id: task for task in Task.objects.only("id", "status", "error")}
    by_task = ledger.runs()
    found_counts = Counter(found for _, _, found, _ in cancels)
    summary(
        "cancel races",
        cancels=len(cancels) + sum(child_found is not None for *_, child_found in cancels),
        found=dict(found_counts),
        tasks=len(tasks),
        completed=sum(task.status == Task.Status.COMPLETED for task in tasks.values()),
        canceled=sum(task.status == Task.Status.CANCELED for task in tasks.values()),
        kills=pools.kills,
        heartbeats_left=Heartbeat.objects.count(),
        overlaps=len(ledger.overlaps(by_task, pools.deaths)),
    )
    # A heartbeat left behind by a cancel that raced a claim (see the test below) is dropped
    # by the janitor once it is older than the heartbeat timeout.
    wait_until(lambda: not Heartbeat.objects.exists(), timeout=5, message="no heartbeat without a run")
    assert ledger.overlaps(by_task, pools.deaths) == []
    for parent, child, found, child_found in cancels:
        if found in UNFINISHED:
            assert tasks[parent].status == Task.Status.CANCELED, (parent, found)
            assert (tasks[child].status, tasks[child].error) == (Task.Status.CANCELED, PARENT_CANCELED), child
            assert child not in by_task, f"child {child} of a canceled parent ran"
        else:
            assert (found, tasks[parent].status) == (Task.Status.COMPLETED, Task.Status.COMPLETED), parent
            expected = Task.Status.CANCELED if child_found in UNFINISHED else Task.Status.COMPLETED
            assert tasks[child].status == expected, (child, child_found)
        # A run that was going when its task was canceled did stop.
        for task_id in (parent, child):
            assert all(run.ended is not None for run in by_task.get(task_id, [])), task_id


def test_a_cancel_that_meets_a_claim_in_progress_cancels_the_run_and_the_rescue_drops_its_heartbeat(
    transactional_db,
):
    """A cancel that meets a task locked by a claim in progress never waits for the lock (it
    would hold one meanwhile): it tries again until the claim commits, then finds the task
    running and cancels it. It leaves the run's heartbeat to the run's pool; with no pool
    alive, the rescue drops it once stale, and never requeues the canceled task."""
    task_id = client.enqueue("reliability.work")
    claimed, commit = threading.Event(), threading.Event()

    def claim():
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(QUERIES["claim"], {"types": ["reliability.work"], "limit": 1, "window": 4, "worker": None})
            claimed.set()
            commit.wait(10)

    claimer = Background(claim)
    assert claimed.wait(10)
    canceler = Background(lambda: queue.cancel(task_id))
    time.sleep(0.3)  # the cancel meets the claim's lock and tries again: a race given a chance
    assert canceler.is_alive() and lock_waiters() == 0  # trying, never waiting on a lock
    commit.set()
    assert (claimer.result(), canceler.result()) == (None, Task.Status.RUNNING)
    assert Task.objects.get(pk=task_id).status == Task.Status.CANCELED
    wait_until(
        lambda: queue.requeue_stale(timeout=0.5) == [] and not Heartbeat.objects.exists(),
        message="the rescue to drop the heartbeat",
    )
    assert Task.objects.get(pk=task_id).status == Task.Status.CANCELED


class Background(threading.Thread):
    """Run `function` on a thread of its own (so on a database connection of its own)."""

    def __init__(self, function):
        super().__init__(daemon=True)
        self._function, self._result, self._error = function, None, None
        self.start()

    def run(self):
        try:
            self._result = self._function()
        except BaseException as exc:
            self._error = exc
        finally:
            connection.close()

    def result(self):
        self.join(10)
        assert not self.is_alive()
        if self._error:
            raise self._error
        return self._result


def lock_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]
