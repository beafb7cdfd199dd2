"""What happens to tasks in a pool, for whoever wants to know: logging subscribes now; metrics
and integrations subscribe the same way, instead of calls inside the pool.

An observer overrides the methods it cares for. It is called on the pool's threads, after
the fact, never with a lock held: it must be quick and must not raise (an exception is
logged and the pool goes on).
"""

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tasks.models import Task
    from tasks.queue import Outcome, TableStats

logger = logging.getLogger(__name__)


class Observer:
    def task_started(self, task: "Task") -> None:
        """A worker is about to run the task's handler."""

    def task_ended(self, outcome: "Outcome", *, recorded: bool, retry_at: datetime | None) -> None:
        """The end of a run was recorded (`recorded`), or found its run no longer owning the
        task. A failure's `retry_at` is when it is retried, None when final."""

    def task_stopped(self, task: "Task", reason: str) -> None:
        """A run was told to stop: its task was canceled (`reason` "canceled"), or it lost its
        task ("lost": rescued from under the pool); once for each reason, however often the pool
        finds it again before the handler ends. (A pool's stop tells its runs, not them.)"""

    def task_rescued(self, task_id: uuid.UUID, status: str) -> None:
        """A janitor requeued (or failed, past its retries) the task of a dead worker, or
        recorded an end handed over by a stopping pool (`status` says which)."""

    def tasks_retried(self, task_ids: list[uuid.UUID]) -> None:
        """Failed tasks whose retry time came were put back to pending."""

    def stats_read(self, stats: "TableStats") -> None:
        """The table's statistics, as the last refresh of any pool left them (read by the
        janitor at each pass)."""


_observers: list[Observer] = []


def subscribe(observer: Observer) -> None:
    if observer not in _observers:
        _observers.append(observer)


def unsubscribe(observer: Observer) -> None:
    if observer in _observers:
        _observers.remove(observer)


def task_started(task: "Task") -> None:
    for observer in list(_observers):
        _call(observer, observer.task_started, task)


def task_ended(outcome: "Outcome", *, recorded: bool, retry_at: datetime | None) -> None:
    for observer in list(_observers):
        _call(observer, observer.task_ended, outcome, recorded=recorded, retry_at=retry_at)


def task_stopped(task: "Task", reason: str) -> None:
    for observer in list(_observers):
        _call(observer, observer.task_stopped, task, reason)


def task_rescued(task_id: uuid.UUID, status: str) -> None:
    for observer in list(_observers):
        _call(observer, observer.task_rescued, task_id, status)


def tasks_retried(task_ids: list[uuid.UUID]) -> None:
    for observer in list(_observers):
        _call(observer, observer.tasks_retried, task_ids)


def stats_read(stats: "TableStats") -> None:
    for observer in list(_observers):
        _call(observer, observer.stats_read, stats)


def _call(observer: Observer, method: Callable[..., None], *args: object, **kwargs: object) -> None:
    try:
        method(*args, **kwargs)
    except Exception:
        logger.exception("observer %s failed", type(observer).__qualname__)
