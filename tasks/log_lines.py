"""The pool's log lines about tasks, as an observer (subscribed when the app is ready): kept
apart from tasks.log, which the logging configuration imports before the models exist."""

import logging
import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from tasks.log import Fields
from tasks.observers import Observer
from tasks.queue import Ending

if TYPE_CHECKING:
    from tasks.models import Task
    from tasks.queue import Outcome


class TaskLogging(Observer):
    """The pool's lines about tasks: one at INFO when a task ends (with how long its handler
    ran) or is told to stop, one at DEBUG when it starts; nothing is formatted that no handler
    writes."""

    logger = logging.getLogger("tasks.pool")

    def task_started(self, task: "Task") -> None:
        self.logger.debug("task started %s retries=%d", Fields(task), task.retries)

    def task_ended(self, outcome: "Outcome", *, recorded: bool, retry_at: datetime | None) -> None:
        task, duration = outcome.run.task, outcome.duration
        took = "-" if duration is None else f"{duration:.3f}s"
        if outcome.ending is Ending.STOPPED:  # canceled or lost: there is nothing to record
            self.logger.info("task stopped %s duration=%s", Fields(task), took)
        elif not recorded:
            self.logger.info(
                "task end discarded: the run no longer owned its task %s ending=%s", Fields(task), outcome.ending
            )
        elif outcome.ending is Ending.COMPLETED:
            self.logger.info("task completed %s duration=%s", Fields(task), took)
        elif outcome.ending is Ending.REQUEUE:
            self.logger.info("task requeued for shutdown %s", Fields(task))
        else:
            retry = retry_at.isoformat() if retry_at else "never"
            self.logger.warning(
                "task failed %s duration=%s retry_at=%s error=%s", Fields(task), took, retry, outcome.error
            )

    def task_stopped(self, task: "Task", reason: str) -> None:
        if reason == "lost":  # rescued from under this pool: it stalled, or lost its database
            self.logger.warning("run no longer owns its task, stopping it %s", Fields(task))
        else:
            self.logger.info("stopping a %s task %s", reason, Fields(task))

    def task_rescued(self, task_id: uuid.UUID, status: str) -> None:
        self.logger.warning(
            "task rescued from a dead worker task_id=%s status=%s", task_id, status, extra={"task_id": str(task_id)}
        )

    def tasks_retried(self, task_ids: list[uuid.UUID]) -> None:
        for task_id in task_ids:
            self.logger.info("failed task requeued for retry task_id=%s", task_id, extra={"task_id": str(task_id)})
