"""Task types used by the tests, registered when this module is imported (by conftest)."""

import threading
import time

from tasks.registry import Retention, handler


class Recorder:
    """What the test handlers saw: each run's task id, payload and start time, thread-safely."""

    def __init__(self):
        self._lock = threading.Lock()
        self.runs: list[dict] = []
        self.gates: dict[str, threading.Event] = {}

    def record(self, context) -> None:
        with self._lock:
            self.runs.append({"id": context.task.id, "payload": context.payload, "started": time.monotonic()})

    def gate(self, name: str) -> threading.Event:
        with self._lock:
            return self.gates.setdefault(name, threading.Event())

    def reset(self) -> None:
        with self._lock:
            self.runs.clear()
            self.gates.clear()


recorder = Recorder()


@handler("test.record")
def record(context):
    """Record the run and complete."""
    recorder.record(context)


@handler("test.kept", retention=Retention(completed=None, failed=None, canceled=None))
def kept(context):
    """Complete; the cleanup keeps this type's tasks for good, canceled ones too (as the
    original meant to keep the types outside its cleanup lists)."""


@handler("test.gate", cancellable=True)
def gate(context):
    """Record the run, then wait until the test opens the gate named in the payload, or a stop."""
    recorder.record(context)
    gate = recorder.gate(context.payload["gate"])
    while not gate.wait(0.01):
        context.raise_if_cancelled()


@handler("test.flaky", requeueable=True)
def flaky(context):
    """Record the run and fail: a requeueable failure."""
    recorder.record(context)
    raise RuntimeError("flaky failure")


@handler("test.ignores_cancel", cancellable=True)
def ignores_cancel(context):
    """Record the run, wait for a stop request, then return normally as if it had finished."""
    recorder.record(context)
    context.wait(30)


@handler("test.slow_to_stop", cancellable=True)
def slow_to_stop(context):
    """Record the run, then wait for the gate named in the payload, heeding no stop request
    meanwhile (a handler between two of its checks)."""
    recorder.record(context)
    recorder.gate(context.payload["gate"]).wait(30)


@handler("test.progress")
def progress(context):
    """Save the next step in the payload."""
    context.update_payload({"step": (context.payload or {}).get("step", 0) + 1})


@handler("test.stubborn")
def stubborn(context):
    """Record the run, then wait for the gate named in the payload, ignoring every stop request."""
    recorder.record(context)
    recorder.gate(context.payload["gate"]).wait(30)


@handler("test.exits")
def exits(context):
    """Raise SystemExit: not an Exception, and still a failure of the task only."""
    recorder.record(context)
    raise SystemExit("handler called sys.exit")


class Unprintable(Exception):
    def __str__(self):
        raise ValueError("no text")


@handler("test.unprintable")
def unprintable(context):
    """Raise an exception whose str() raises too."""
    recorder.record(context)
    raise Unprintable()
