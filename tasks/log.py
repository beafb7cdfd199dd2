"""Structured logging of tasks: every line about a task carries its id, type and request id,
and every line logged while a request or a task's handler runs carries the request id."""

import logging
import re
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from django.db import transaction

if TYPE_CHECKING:
    from tasks.models import Task


# The id of the HTTP request being served, or of the request that enqueued the task whose
# handler runs: set by the project's request middleware and by the worker around a handler.
current_request_id: ContextVar[str | None] = ContextVar("current_request_id", default=None)


def log_on_commit(logger: logging.Logger, message: str, *args: object) -> None:
    """Log an INFO line once the current transaction commits (at once outside one), as a line
    of the request being served now; nothing if the transaction rolls back: its rows never
    existed."""
    request_id = current_request_id.get()

    def emit() -> None:
        token = current_request_id.set(request_id)
        try:
            logger.info(message, *args)
        finally:
            current_request_id.reset(token)

    transaction.on_commit(emit)


def task_fields(task: "Task") -> str:
    return f"task_id={task.id} type={task.type} request_id={task.request_id or '-'}"


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


class RedactingFormatter(logging.Formatter):
    """Formats as usual, adds the current request id to a line that has none, then hides URL
    passwords: payloads and error texts reach the logs."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id = current_request_id.get()
        if request_id is not None and not _REQUEST_ID_FIELD.search(text):
            text = f"{text} request_id={request_id}"
        return redact(text) if "://" in text else text
