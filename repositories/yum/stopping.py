"""How the yum layer's long steps (downloads, decompression, parses) are asked to stop: a
`should_stop` callable, asked between chunks or records, that answers true once its caller's
task was cancelled, lost, or is shutting down."""

from collections.abc import Callable

from repositories.exceptions import Stopped

StopCheck = Callable[[], bool]


def never() -> bool:
    return False


def stop_if_asked(should_stop: StopCheck, doing: str) -> None:
    """Raise Stopped if `should_stop` says so; `doing` names the step in the message."""
    if should_stop():
        raise Stopped(f"{doing} stopped on request")
