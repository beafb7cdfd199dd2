"""Settings of the task framework: their defaults, read lazily from `settings.TASKING`.

This module is the one place where the defaults live. `contentsources/settings.py` puts in
`TASKING` only what the environment sets (through `from_environment`); a key that this
module does not know is reported by the system check `tasks.E005`.
"""

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}

MAX_RETRIES = 3
ERROR_LIMIT = 4000
# The longest a duration setting may be: beyond, the database's intervals and the platform's
# timers overflow, and no deployment means it.
MAX_DURATION = 365 * 86400.0


def parse_duration(text: str) -> float:
    """Seconds from `90`, `500ms`, `1m`, `12h` (the original's Go-style durations)."""
    match = _DURATION.match(str(text))
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)] if match else math.inf
    if not math.isfinite(seconds):
        raise ValueError(f"not a duration: {text!r} (use seconds, or a number with ms, s, m, h or d)")
    if seconds > MAX_DURATION:
        raise ValueError(f"too long a duration: {text!r} (at most a year)")
    return seconds


def parse_integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"not an integer: {text!r}") from None


# How a pool hears of new tasks and of cancels: `listen`, on a connection of its own that
# LISTENs (a session, which PgBouncer's transaction mode cannot give), or `poll`: the queue is
# looked at every poll interval and cancels are seen at each heartbeat refresh, and the
# connections keep no session state (nothing prepared on the server, no LISTEN).
WAKEUPS = ("listen", "poll")


def parse_wakeups(text: str) -> str:
    if text not in WAKEUPS:
        raise ValueError(f"not a wake-up mode: {text!r} (use {' or '.join(WAKEUPS)})")
    return text


def _setting(default: float | str, parse: Callable[[str], float | str]) -> Any:
    return field(default=default, metadata={"parse": parse})


@dataclass(frozen=True)
class TaskingSettings:
    """The framework's settings; the environment variable of each is `TASKING_<NAME>`."""

    # A running task whose heartbeat is older than this is rescued from its dead worker.
    heartbeat: float = _setting(60.0, parse_duration)
    worker_count: int = _setting(3, parse_integer)
    # U in the wait before an automatic retry: U / (MAX_RETRIES - retries + 1).
    retry_wait_upper_bound: float = _setting(12 * 3600.0, parse_duration)
    # Most connections one `runworkers` process may open.
    pool_limit: int = _setting(20, parse_integer)
    shutdown_grace: float = _setting(10.0, parse_duration)
    # Largest payload, in bytes of its JSON text.
    payload_limit: int = _setting(1024 * 1024, parse_integer)
    # How often a pool's janitor deletes old finished tasks (one pool at a time); 0: never
    # (`manage.py tasks cleanup` still does). Every 6 hours, as the original's cron job.
    cleanup_interval: float = _setting(6 * 3600.0, parse_duration)
    wakeups: str = _setting("listen", parse_wakeups)
    # With `poll` wake-ups: how often an idle pool looks for ready tasks. A task enqueued
    # into idle pools waits up to this long (half of it on average); each look is one claim
    # on the ready index, about a millisecond of the server's time.
    poll_interval: float = _setting(1.0, parse_duration)

    @property
    def heartbeat_interval(self) -> float:
        """How often running tasks beat and stale beats are looked for."""
        return self.heartbeat / 3


KNOWN_KEYS = {f.name.upper(): f for f in fields(TaskingSettings)}


def from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """The `TASKING` values that `TASKING_<NAME>` environment variables set, parsed.

    Raises ValueError naming the variable whose value cannot be read.
    """
    values: dict[str, Any] = {}
    for key, setting in KNOWN_KEYS.items():
        text = environ.get(f"TASKING_{key}")
        if text is None:
            continue
        try:
            values[key] = setting.metadata["parse"](text)
        except ValueError as exc:
            raise ValueError(f"TASKING_{key}: {exc}") from None
    return values


def configured() -> Mapping[str, Any]:
    """`settings.TASKING` as given, or an empty mapping."""
    from django.conf import settings

    given = getattr(settings, "TASKING", None)
    return given if isinstance(given, Mapping) else {}


def tasking() -> TaskingSettings:
    """The framework's settings: `settings.TASKING` over the defaults. Keys it does not know
    are left out here and reported by the system checks."""
    given = configured()
    return TaskingSettings(**{key.lower(): value for key, value in given.items() if key in KNOWN_KEYS})
