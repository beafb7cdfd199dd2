"""Errors of the task framework. TaskError itself is never raised."""

import uuid


class TaskError(Exception):
    """Base class of the task framework's errors."""


class TaskNotFound(TaskError):
    """No task has this id."""


class DependencyNotFound(TaskError):
    """A dependency given at enqueue does not exist."""


class UnknownTaskType(TaskError):
    """No handler is registered for this type."""


class InvalidTask(TaskError):
    """An enqueue argument cannot be stored (priority out of range, text too long)."""


class InvalidPayload(TaskError):
    """The payload cannot be stored: not JSON, or too large."""


class TaskAlreadyQueued(TaskError):
    """A pending or running task already holds the unique key; `task_id` is that task."""

    def __init__(self, message: str, *, task_id: uuid.UUID | None):
        super().__init__(message)
        self.task_id = task_id


class TaskBusy(TaskError):
    """Another transaction holds the task's row (or a dependent's): try again later."""


class TaskNotCancellable(TaskError):
    """The task's type does not allow cancellation."""


class TaskInterrupted(TaskError):
    """Raised inside a handler to stop: its task was cancelled, lost, or the pool is stopping."""


class TaskLost(TaskInterrupted):
    """The run no longer owns its task (requeued or cancelled); it may change nothing."""
