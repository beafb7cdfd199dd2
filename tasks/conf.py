"""Settings of the task framework, read lazily from `settings.TASKING`."""

import re
from dataclasses import dataclass

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}

MAX_RETRIES = 3
ERROR_LIMIT = 4000


def parse_duration(text: str) -> float:
    """Seconds from `90`, `500ms`, `1m`, `12h` (the original's Go-style durations)."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"not a duration: {text!r} (use seconds, or a number with ms, s, m, h or d)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@dataclass(frozen=True)
class TaskingSettings:
    heartbeat: float
    worker_count: int
    retry_wait_upper_bound: float
    pool_limit: int
    shutdown_grace: float
    payload_limit: int

    @property
    def heartbeat_interval(self) -> float:
        """How often running tasks beat and stale beats are looked for."""
        return self.heartbeat / 3


_DEFAULTS = {
    "HEARTBEAT": 60.0,
    "WORKER_COUNT": 3,
    "RETRY_WAIT_UPPER_BOUND": 12 * 3600.0,
    "POOL_LIMIT": 20,
    "SHUTDOWN_GRACE": 10.0,
    "PAYLOAD_LIMIT": 1024 * 1024,
}


def tasking() -> TaskingSettings:
    from django.conf import settings

    values = {**_DEFAULTS, **getattr(settings, "TASKING", {})}
    return TaskingSettings(**{key.lower(): value for key, value in values.items()})
