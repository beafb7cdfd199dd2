"""What a running handler gets: its task, its payload, and the verbs to stop and save progress."""

import threading
from enum import StrEnum
from typing import Any

from tasks import queue
from tasks.exceptions import TaskInterrupted, TaskLost
from tasks.log import task_logger
from tasks.payloads import serialize_payload


class StopReason(StrEnum):
    CANCELED = "canceled"
    LOST = "lost"  # the run no longer owns its task (requeued after a stall)
    SHUTDOWN = "shutdown"


class TaskContext:
    """Handed to a handler. The pool sets the stop signal; the handler checks or waits on it."""

    def __init__(self, run: queue.Run):
        self.run = run
        self.task = run.task
        self.payload: Any = run.task.payload  # JSON: whatever the enqueue gave
        self.logger = task_logger(run.task)
        self._stop = threading.Event()
        self._stop_lock = threading.Lock()
        self._stops_told: set[StopReason] = set()
        self.stop_reason: StopReason | None = None
        # Set when the handler has returned: its end is being recorded, so a missing
        # heartbeat then means the end was written, not that the run lost its task.
        self.ended = False

    def request_stop(self, reason: StopReason) -> bool:
        """Tell the handler to stop; False if it was already told to for this reason (a cancel
        heard, then found again at each heartbeat until the handler ends): nothing new to report."""
        with self._stop_lock:
            if reason in self._stops_told:
                return False
            self._stops_told.add(reason)
            if self.stop_reason is None:
                self.stop_reason = reason
        self._stop.set()
        return True

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def raise_if_cancelled(self) -> None:
        """Stop here if the task was cancelled, lost, or the pool is stopping."""
        if self._stop.is_set():
            raise TaskInterrupted(f"task interrupted: {self.stop_reason}")

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` seconds; True (at once) if the handler should stop."""
        return self._stop.wait(timeout)

    def update_payload(self, payload: object) -> None:
        """Save progress, so that a later run of this task can resume from it."""
        if not queue.update_payload(self.run, serialize_payload(payload)):
            self.request_stop(StopReason.LOST)
            raise TaskLost(f"task {self.task.id} is no longer owned by this run")
        self.payload = payload
