"""System checks for the task framework's settings."""

import math
import os
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from tasks.conf import KNOWN_KEYS, MAX_DURATION, WAKEUPS, tasking

# Connections a pool opens besides one per worker: dispatcher, heartbeat, janitor, listener, main.
POOL_OVERHEAD_CONNECTIONS = 5


@register()
def check_tasking_settings(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    given = getattr(settings, "TASKING", {})
    if not isinstance(given, Mapping):
        return [Error(f"TASKING must be a dict, not {type(given).__name__}.", id="tasks.E007")]
    errors = _unknown_or_mistyped(given)
    if errors:
        return errors  # the values below cannot be compared yet
    conf = tasking()
    if conf.heartbeat < 0.3:
        errors.append(Error("TASKING_HEARTBEAT must be at least 300ms.", id="tasks.E001"))
    if conf.worker_count < 1:
        errors.append(Error("TASKING_WORKER_COUNT must be at least 1.", id="tasks.E002"))
    if conf.worker_count + POOL_OVERHEAD_CONNECTIONS > conf.pool_limit:
        errors.append(
            Error(
                f"TASKING_POOL_LIMIT ({conf.pool_limit}) is below what {conf.worker_count} workers need "
                f"({conf.worker_count + POOL_OVERHEAD_CONNECTIONS} connections).",
                id="tasks.E003",
            )
        )
    if conf.payload_limit < 1:
        errors.append(Error("TASKING_PAYLOAD_LIMIT must be positive.", id="tasks.E004"))
    if conf.poll_interval < 0.01:
        errors.append(Error("TASKING_POLL_INTERVAL must be at least 10ms.", id="tasks.E008"))
    options = settings.DATABASES.get("default", {}).get("OPTIONS", {})
    if conf.wakeups == "poll" and (options.get("prepare_threshold") is not None or "options" in options):
        errors.append(
            Error(
                "TASKING_WAKEUPS is poll, but the database connection prepares statements or sends "
                "startup options (DATABASES OPTIONS prepare_threshold, options): PgBouncer's "
                "transaction mode keeps neither.",
                hint="Set TASKING_WAKEUPS in the environment, where the settings read it before the database's.",
                id="tasks.E009",
            )
        )
    return errors


@register()
def check_tasking_environment(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """A misspelt TASKING_* variable would otherwise be ignored without a word."""
    unknown = sorted(name for name in os.environ if name.startswith("TASKING_") and name[8:] not in KNOWN_KEYS)
    return [
        Warning(
            f"The environment variable {name} is not a setting of the task framework, and is ignored.",
            hint=f"The known ones are {', '.join('TASKING_' + key for key in sorted(KNOWN_KEYS))}.",
            id="tasks.W001",
        )
        for name in unknown
    ]


def _unknown_or_mistyped(given: Mapping[Any, Any]) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for key, value in given.items():
        setting = KNOWN_KEYS.get(key)
        if setting is None:
            known = ", ".join(sorted(KNOWN_KEYS))
            errors.append(Error(f"TASKING has an unknown key {key!r}; the known keys are {known}.", id="tasks.E005"))
            continue
        if setting.type is str:
            if value not in WAKEUPS:
                choices = " or ".join(repr(choice) for choice in WAKEUPS)
                errors.append(
                    Error(f"TASKING[{key!r}] (TASKING_{key}) must be {choices}, not {value!r}.", id="tasks.E006")
                )
            continue
        # A duration may be given as an int; a count must be an int. bool is an int, not a number here.
        expected = (int, float) if setting.type is float else (int,)
        is_number = isinstance(value, expected) and not isinstance(value, bool)
        too_long = setting.type is float and is_number and _finite(value) and value > MAX_DURATION
        if not is_number or not _finite(value) or value < 0 or too_long:
            if setting.type is float:
                kind = f"a number of seconds from 0 to {MAX_DURATION:.0f} (a year)"
            else:
                kind = "an integer, not negative"
            errors.append(Error(f"TASKING[{key!r}] (TASKING_{key}) must be {kind}, not {value!r}.", id="tasks.E006"))
    return errors


def _finite(value: float) -> bool:
    """Whether a number is a finite float, as the framework computes with it (a huge int is not)."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False
