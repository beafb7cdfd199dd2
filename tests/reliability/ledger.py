"""Writing and reading the ledger of runs (models.LedgerEntry), and what it proves.

Handlers call `open_run` first and `close_run` last. The checks rebuild each task's runs as
time intervals: a run killed from outside has no end of its own, and ends when its process
was seen dead. A later run of the same task must start after that, since the rescue only
happens once the dead run's heartbeat has expired.
"""

import os
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise

from django.db import close_old_connections

from tests.reliability.models import LedgerEntry


def open_run(context) -> int:
    """Record the start of this run; return the entry to close."""
    entry = LedgerEntry.objects.create(
        task_id=context.task.id, pid=os.getpid(), thread=threading.current_thread().name, started=time.time()
    )
    return entry.pk


def close_run(entry_id: int) -> None:
    # A run that outlived a database restart still records its end: the thread's connection
    # died with the server, and is checked and replaced here as at the start of a task.
    close_old_connections()
    LedgerEntry.objects.filter(pk=entry_id).update(ended=time.time())


def runs_before(context) -> int:
    """How many runs of this task started before this one (including killed ones)."""
    return LedgerEntry.objects.filter(task_id=context.task.id).count()


@dataclass(frozen=True)
class Run:
    task_id: uuid.UUID
    pid: int
    thread: str
    started: float
    ended: float | None


COLUMNS = ("task_id", "pid", "thread", "started", "ended")


def runs(rows: Iterable[tuple] | None = None) -> dict[uuid.UUID, list[Run]]:
    """Every recorded run, by task, in start order: from the test database, or from `rows`
    of COLUMNS read elsewhere."""
    if rows is None:
        rows = LedgerEntry.objects.values_list(*COLUMNS)
    by_task: dict[uuid.UUID, list[Run]] = defaultdict(list)
    for row in sorted(rows, key=lambda row: row[3]):
        by_task[row[0]].append(Run(*row))
    return by_task


class Deaths:
    """When each process was seen dead (killed, crashed or exited), for runs with no end."""

    def __init__(self):
        self._times: dict[int, list[float]] = defaultdict(list)

    def add(self, pid: int, at: float) -> None:
        self._times[pid].append(at)

    def after(self, pid: int, moment: float) -> float | None:
        """The first death of `pid` after `moment` (pids can be reused)."""
        return min((at for at in self._times[pid] if at >= moment), default=None)

    def __len__(self) -> int:
        return sum(map(len, self._times.values()))


def end_of(run: Run, deaths: Deaths) -> float | None:
    return run.ended if run.ended is not None else deaths.after(run.pid, run.started)


def overlaps(by_task: dict[uuid.UUID, list[Run]], deaths: Deaths) -> list[str]:
    """Runs of one task that were alive at the same time, and runs that never ended."""
    found = []
    for task_id, task_runs in by_task.items():
        for earlier, later in pairwise(task_runs):
            end = end_of(earlier, deaths)
            if end is None:
                found.append(f"task {task_id}: a run on pid {earlier.pid} never ended and its process did not die")
            elif later.started < end:
                found.append(
                    f"task {task_id}: run on pid {later.pid} {later.thread} started {end - later.started:.3f}s "
                    f"before the run on pid {earlier.pid} {earlier.thread} ended"
                )
    return found


def order_violations(by_task: dict[uuid.UUID, list[Run]], edges: Iterable[tuple[uuid.UUID, uuid.UUID]]) -> list[str]:
    """Dependents (task, dependency) that started before a run of their dependency ended."""
    found = []
    for task_id, dependency_id in edges:
        child_runs = by_task.get(task_id)
        if not child_runs:
            continue
        parent_ends = [run.ended for run in by_task.get(dependency_id, []) if run.ended is not None]
        if not parent_ends:
            found.append(f"task {task_id} ran, but its dependency {dependency_id} never finished a run")
            continue
        last_end = max(parent_ends)
        if child_runs[0].started < last_end:
            found.append(
                f"task {task_id} started {last_end - child_runs[0].started:.3f}s before its dependency "
                f"{dependency_id} ended"
            )
    return found
