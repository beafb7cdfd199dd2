"""Task types and their handlers: a handler is a plain function registered for a type name."""

import builtins
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from tasks.exceptions import UnknownTaskType

if TYPE_CHECKING:
    from tasks.context import TaskContext

HandlerFunction = Callable[["TaskContext"], Any]


@dataclass(frozen=True)
class Retention:
    """How long the cleanup keeps a type's finished tasks: completed and failed ones from their
    end, canceled ones (which have no end) from their enqueue. None keeps them for good.

    The default is the original service's for most types: 20 days each.
    """

    completed: timedelta | None = timedelta(days=20)
    failed: timedelta | None = timedelta(days=20)
    canceled: timedelta | None = timedelta(days=20)


DEFAULT_RETENTION = Retention()


@dataclass(frozen=True)
class Handler:
    type: str
    function: HandlerFunction
    # Users may cancel tasks of this type (pending or running).
    cancellable: bool = False
    # A failure is retried automatically, with backoff, up to the retry cap.
    requeueable: bool = False
    # Exceptions that are this type's ordinary failures (a bad URL, a server away): logged in
    # one line; any other exception is a bug, logged at ERROR with its traceback.
    failures: tuple[builtins.type[BaseException], ...] = ()
    # How long the cleanup keeps this type's finished tasks.
    retention: Retention = DEFAULT_RETENTION


_handlers: dict[str, Handler] = {}


def handler(
    type: str,
    *,
    cancellable: bool = False,
    requeueable: bool = False,
    failures: tuple[builtins.type[BaseException], ...] = (),
    retention: Retention = DEFAULT_RETENTION,
) -> Callable[[HandlerFunction], HandlerFunction]:
    """Register the decorated function as the handler of `type`.

    The function receives a `tasks.context.TaskContext`. Returning means the task completed;
    raising means it failed. `retention` says how long the cleanup keeps the type's finished
    tasks.
    """

    def register(function: HandlerFunction) -> HandlerFunction:
        existing = _handlers.get(type)
        if existing is not None and existing.function is not function:
            raise ValueError(f"task type {type!r} already has a handler: {existing.function.__qualname__}")
        _handlers[type] = Handler(
            type, function, cancellable=cancellable, requeueable=requeueable, failures=failures, retention=retention
        )
        return function

    return register


def find(type: str) -> Handler | None:
    return _handlers.get(type)


def get(type: str) -> Handler:
    handler = _handlers.get(type)
    if handler is None:
        raise UnknownTaskType(f"unknown task type: {type!r} (no handler is registered for it)")
    return handler


def types() -> list[str]:
    return sorted(_handlers)


def retentions() -> dict[str, Retention]:
    """The retention of every registered type (a type without a handler has the default)."""
    return {type: handler.retention for type, handler in _handlers.items()}
