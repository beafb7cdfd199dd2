"""Scenario 2: a storm. A flood of tasks with random dependencies and priorities drains through
worker processes while a chaos loop SIGKILLs and restarts a random busy one every few hundred
milliseconds. Bounded in CI; `--long` storms for minutes."""

import random
import threading
import time
from collections import Counter, defaultdict

import pytest
from django.db import connection

from tasks import client
from tasks.models import Task, TaskDependency
from tasks.queue import MAX_RETRIES_ERROR, PARENT_CANCELED, PARENT_FAILED
from tests.reliability import ledger
from tests.reliability.models import LedgerEntry
from tests.reliability.options import long_minutes

PROCESSES = 4
WORKERS = "2"  # threads per process: the machine has 2 cores
CI_TASKS = 2000
CI_CHAOS_SECONDS = 25.0
CHAOS_INTERVAL = (0.2, 0.6)
LONG_BACKLOG = 1000  # in --long mode the flood waits while this many tasks are unfinished
DURATIONS = [0, 0.01, 0.05, 0.2]
BATCH = 10
PRIORITIES = [-1, 0, 0, 1, 2]
DEPENDENCY_COUNTS = [0, 0, 0, 0, 1, 1, 1, 2, 2, 3]
RECENT = 200  # dependencies are picked among the latest tasks, which are likely unfinished
FINAL = [Task.Status.COMPLETED, Task.Status.FAILED, Task.Status.CANCELED]


class Flood(threading.Thread):
    """Enqueue `total` tasks (or, with None, until stopped) through tasks.client as an API would:
    batches of 1-10 alike tasks, each batch with a random priority and 0-3 dependencies on
    earlier tasks (several children of one parent are common: snapshots after an introspection)."""

    def __init__(self, total: int | None, stop: threading.Event):
        super().__init__(name="flood", daemon=True)
        self.total = total
        self.stop = stop
        self.ids = []
        self.error = None

    def run(self):
        try:
            batches = 0
            while not self.stop.is_set() and (self.total is None or len(self.ids) < self.total):
                batches += 1
                if self.total is None and batches % 20 == 0:
                    while self._backlog() > LONG_BACKLOG and not self.stop.wait(0.5):
                        pass  # pacing: let the pools catch up
                recent = self.ids[-RECENT:]
                count = random.randint(1, BATCH)
                if self.total is not None:
                    count = min(count, self.total - len(self.ids))
                self.ids += client.enqueue_many(
                    "reliability.work",
                    [{"seconds": random.choice(DURATIONS)} for _ in range(count)],
                    dependencies=random.sample(recent, min(len(recent), random.choice(DEPENDENCY_COUNTS))),
                    priority=random.choice(PRIORITIES),
                )
        except BaseException as exc:
            self.error = exc
        finally:
            connection.close()

    @staticmethod
    def _backlog() -> int:
        return Task.objects.exclude(status__in=FINAL).count()


def busy_slots(pools) -> list[int]:
    """Slots whose process has a run in progress: killing an idle or starting one tests little."""
    live = {process.pid: slot for slot, process in pools.slots.items() if process.poll() is None}
    busy = LedgerEntry.objects.filter(ended=None, pid__in=list(live)).values_list("pid", flat=True).distinct()
    return [live[pid] for pid in busy]


@pytest.mark.storm
@pytest.mark.timeout(300)
def test_storm(fleet, summary, request):
    minutes = long_minutes(request.config)
    chaos_seconds = minutes * 60 if minutes else CI_CHAOS_SECONDS
    pools = fleet("--workers", WORKERS, LOG_LEVEL="WARNING")
    for _ in range(PROCESSES):
        pools.start(wait=False)
    stop_flood = threading.Event()
    flood = Flood(None if minutes else CI_TASKS, stop_flood)
    began = time.monotonic()
    flood.start()
    try:
        # CI: as long as the flood, and at least CI_CHAOS_SECONDS; --long: the minutes asked.
        while time.monotonic() - began < chaos_seconds or (minutes is None and flood.is_alive()):
            time.sleep(random.uniform(*CHAOS_INTERVAL))  # the chaos interval
            pools.revive()
            busy = busy_slots(pools)
            if busy:
                slot = random.choice(busy)
                pools.kill(slot)
                pools.start(slot, wait=False)
    finally:
        stop_flood.set()
        flood.join(timeout=60)
    assert flood.error is None, flood.error
    ids = flood.ids
    chaos_ended = time.monotonic()
    pools.until(
        lambda: not Task.objects.exclude(status__in=FINAL).exists(),
        timeout=180,
        message="every task to reach a final state",
    )
    drained = time.monotonic()

    tasks = {task.id: task for task in Task.objects.only("id", "status", "error", "retries")}
    statuses = Counter(task.status for task in tasks.values())
    edges = list(TaskDependency.objects.values_list("task_id", "dependency_id"))
    by_task = ledger.runs()
    overlaps = ledger.overlaps(by_task, pools.deaths)
    order = ledger.order_violations(by_task, edges)
    summary(
        "storm",
        tasks=len(ids),
        chaos_seconds=round(chaos_ended - began),
        drain_seconds=round(drained - chaos_ended),
        kills=pools.kills,
        retries=sum(task.retries for task in tasks.values()),
        max_retries=max(task.retries for task in tasks.values()),
        completed=statuses[Task.Status.COMPLETED],
        failed=statuses[Task.Status.FAILED],
        canceled=statuses[Task.Status.CANCELED],
        overlaps=len(overlaps),
        order_violations=len(order),
        unexpected_exits=len(pools.exits),
    )
    assert set(tasks) == set(ids)
    assert overlaps == []
    assert order == []
    assert pools.exits == []
    assert max(task.retries for task in tasks.values()) <= 3
    # Runs fail only by exhausting their retries, and only such failures cancel dependents.
    assert {task.error for task in tasks.values() if task.status == Task.Status.FAILED} <= {MAX_RETRIES_ERROR}
    # A failure cancels its descendants as "parent task failed"; a task enqueued after its
    # dependency was so canceled is canceled at once as "parent task canceled".
    canceled_reasons = {task.error for task in tasks.values() if task.status == Task.Status.CANCELED}
    assert canceled_reasons <= {PARENT_FAILED, PARENT_CANCELED}
    # A task is canceled exactly when one of its dependencies did not complete.
    parents = defaultdict(list)
    for task_id, dependency_id in edges:
        parents[task_id].append(tasks[dependency_id].status)
    for task_id, task in tasks.items():
        doomed = any(status != Task.Status.COMPLETED for status in parents[task_id])
        assert (task.status == Task.Status.CANCELED) == doomed, (task_id, task.status, parents[task_id])
    # A completed task's handler did finish a run.
    finished = {task_id for task_id, runs in by_task.items() if any(run.ended is not None for run in runs)}
    assert {task_id for task_id, task in tasks.items() if task.status == Task.Status.COMPLETED} <= finished
