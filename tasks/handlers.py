"""Diagnostic task types that every pool serves, for smoke tests and benchmarks."""

from tasks.registry import handler


@handler("diagnostics.noop")
def noop(context):
    """Do nothing: measures the framework's own cost per task."""


@handler("diagnostics.sleep", cancellable=True)
def sleep(context):
    """Sleep for `payload["seconds"]`, stopping as soon as the task is cancelled."""
    seconds = float((context.payload or {}).get("seconds", 1))
    if context.wait(seconds):
        context.raise_if_cancelled()


@handler("diagnostics.fail")
def fail(context):
    """Raise with `payload["message"]`."""
    raise RuntimeError((context.payload or {}).get("message", "diagnostics.fail was asked to fail"))
