"""Diagnostic task types that every pool serves, for smoke tests and benchmarks."""

from tasks.context import TaskContext
from tasks.registry import handler


@handler("diagnostics.noop")
def noop(context: TaskContext) -> None:
    """Do nothing: measures the framework's own cost per task."""


@handler("diagnostics.sleep", cancellable=True)
def sleep(context: TaskContext) -> None:
    """Sleep for `payload["seconds"]`, stopping as soon as the task is cancelled."""
    seconds = float((context.payload or {}).get("seconds", 1))
    if context.wait(seconds):
        context.raise_if_cancelled()


@handler("diagnostics.fail")
def fail(context: TaskContext) -> None:
    """Raise with `payload["message"]`."""
    raise RuntimeError((context.payload or {}).get("message", "diagnostics.fail was asked to fail"))
