"""Task types and their handlers: a handler is a plain function registered for a type name."""

import builtins
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasks.context import TaskContext
from dataclasses import dataclass

from tasks.exceptions import UnknownTaskType

HandlerFunction = Callable[["TaskContext"], Any]


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


_handlers: dict[str, Handler] = {}


def handler(
    type: str,
    *,
    cancellable: bool = False,
    requeueable: bool = False,
    failures: tuple[builtins.type[BaseException], ...] = (),
) -> Callable[[HandlerFunction], HandlerFunction]:
    """Register the decorated function as the handler of `type`.

    The function receives a `tasks.context.TaskContext`. Returning means the task completed;
    raising means it failed.
    """

    def register(function: HandlerFunction) -> HandlerFunction:
        existing = _handlers.get(type)
        if existing is not None and existing.function is not function:
            raise ValueError(f"task type {type!r} already has a handler: {existing.function.__qualname__}")
        _handlers[type] = Handler(type, function, cancellable=cancellable, requeueable=requeueable, failures=failures)
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
