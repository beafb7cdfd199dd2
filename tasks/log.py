"""Structured logging of tasks: every line about a task, or logged while its handler runs,
carries its id, type, org and request id, and every line logged while a request is served
carries the request id. As `key=value` text by default; as fields of their own in JSON."""

import logging
import re
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from django.db import transaction
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as BaseJsonFormatter

if TYPE_CHECKING:
    from tasks.models import Task


# The id of the HTTP request being served, or of the request that enqueued the task whose
# handler runs: set by the project's request middleware and by the worker around a handler.
current_request_id: ContextVar[str | None] = ContextVar("current_request_id", default=None)
# The task whose handler runs: set by the worker around a handler.
current_task: ContextVar["Task | None"] = ContextVar("current_task", default=None)


def log_on_commit(logger: logging.Logger, message: str, *args: object, task: dict[str, object] | None = None) -> None:
    """Log an INFO line once the current transaction commits (at once outside one), as a line
    of the request being served now; nothing if the transaction rolls back: its rows never
    existed. A line about one task gives its fields (task_id, type, org_id, and request_id
    when it is not the current request's) as `task`: in JSON they are fields of their own (in
    text the message has them)."""
    request_id = current_request_id.get()

    def emit() -> None:
        token = current_request_id.set(request_id)
        try:
            logger.info(message, *args, extra=task)
        finally:
            current_request_id.reset(token)

    transaction.on_commit(emit)


def task_fields(task: "Task") -> str:
    return f"task_id={task.id} type={task.type} org_id={task.org_id or '-'} request_id={task.request_id or '-'}"


class Fields:
    """A task's fields, formatted only if a handler writes the line (logging's lazy %s)."""

    __slots__ = ("task",)

    def __init__(self, task: "Task"):
        self.task = task

    def __str__(self) -> str:
        return task_fields(self.task)


class TaskLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger bound to one task: `key=value` fields are appended to each message."""

    def __init__(self, logger: logging.Logger, fields: str):
        super().__init__(logger)
        self.fields = fields

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        return f"{msg} {self.fields}", kwargs


def task_logger(task: "Task", name: str = "tasks.handler") -> TaskLogger:
    return TaskLogger(logging.getLogger(name), task_fields(task))


_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/\s:@]*):(?P<password>[^/\s@]+)@")


# A line's own request_id field (not, say, the task_request_id of a task it is about).
_REQUEST_ID_FIELD = re.compile(r"\brequest_id=")


def redact(text: str) -> str:
    """Hide the password of every `scheme://user:password@host` URL in the text."""
    return _URL_CREDENTIALS.sub(r"\g<scheme>\g<user>:***@", text)


def task_of(record: logging.LogRecord) -> "Task | None":
    """The task a line is about: one given to it as Fields, or the one whose handler runs."""
    if isinstance(record.args, tuple):
        for arg in record.args:
            if isinstance(arg, Fields):
                return arg.task
    return current_task.get()


class RedactingFormatter(logging.Formatter):
    """Formats as usual, adds the fields of the running task and the current request id to a
    line that has none, then hides URL passwords: payloads and error texts reach the logs."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        task = current_task.get()
        if task is not None and "task_id=" not in text:
            text = f"{text} {task_fields(task)}"
        request_id = current_request_id.get()
        if request_id is not None and not _REQUEST_ID_FIELD.search(text):
            text = f"{text} request_id={request_id}"
        return redact(text) if "://" in text else text


class JsonFormatter(BaseJsonFormatter):
    """One JSON object a line (LOG_FORMAT=json): timestamp, level, logger and message, the
    traceback of an unexpected error as `exc_info`, and as fields of their own the task's
    `task_id`, `type` and `org_id` and the `request_id`, when the line has them. URL
    passwords are hidden as in text."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", True)
        # Django's request lines carry the request object itself: its path is in the message.
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, "request"])
        super().__init__("%(levelname)s %(name)s %(message)s", *args, **kwargs)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        # A line about a task given by its fields (an enqueue, a cancel) keeps them, even when
        # logged by another task's handler; its request, unless given (an enqueue's), is the
        # one being served (or the handler's), as in text.
        task = None if "task_id" in log_data else task_of(record)
        if task is not None:
            log_data.update(task_id=str(task.id), type=task.type, org_id=task.org_id)
        request_id = (task.request_id if task is not None else log_data.get("request_id")) or current_request_id.get()
        log_data["request_id"] = request_id
        for key in ("message", "exc_info"):
            if isinstance(log_data.get(key), str) and "://" in log_data[key]:
                log_data[key] = redact(log_data[key])
        for key in ("org_id", "request_id"):
            if log_data.get(key) is None:
                log_data.pop(key, None)
