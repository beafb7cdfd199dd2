"""Running one task: its handler in its context, and its end as an Outcome.

The pool's workers call `run_task` for each run they take; so can any other runner of the
framework's handlers (a Django Tasks backend), which then records the Outcome itself.
"""

import logging
import time

from tasks import observers
from tasks.context import StopReason, TaskContext
from tasks.log import Fields, current_request_id, current_task
from tasks.queue import Ending, Outcome
from tasks.registry import Handler

logger = logging.getLogger("tasks.pool")


def run_task(context: TaskContext, handler: Handler) -> Outcome:
    """Run the handler; never raise. A handler that returns completed its task; one that
    raised failed it, unless it was stopped (canceled, lost: nothing to record; shutdown:
    back to the queue). The request id of the task is the context of every line it logs."""
    task = context.task
    observers.task_started(task)
    request_id = current_request_id.set(task.request_id)
    running = current_task.set(task)
    started = time.monotonic()
    try:
        handler.function(context)
    except BaseException as exc:  # a handler must never take its worker down
        error = exc
    else:
        return Outcome(context.run, Ending.COMPLETED, duration=time.monotonic() - started)
    finally:
        current_task.reset(running)
        current_request_id.reset(request_id)
    duration = time.monotonic() - started
    reason = context.stop_reason
    if reason is StopReason.SHUTDOWN:
        return Outcome(context.run, Ending.REQUEUE, duration=duration)
    if reason is not None:  # canceled or lost: its observers were told when it was stopped
        return Outcome(context.run, Ending.STOPPED, duration=duration)
    if not isinstance(error, handler.failures):
        logger.error("task handler raised an unexpected error %s", Fields(task), exc_info=error)
    return Outcome(context.run, Ending.FAILED, error_text(error), handler.requeueable, duration)


def error_text(error: BaseException) -> str:
    """How a failure is stored: the exception's class and message, on one line of text."""
    try:
        message = str(error)
    except Exception:  # a handler's exception class may be broken; its task must still end
        message = "(its message could not be read)"
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
