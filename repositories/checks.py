"""System checks for the repositories app's settings."""

import math
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register

from repositories.conf import KNOWN_KEYS, repositories

_KINDS = {bool: "true or false", float: "a number of seconds", int: "an integer", str: "a string"}


@register()
def check_repositories_settings(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    given = getattr(settings, "REPOSITORIES", {})
    if not isinstance(given, Mapping):
        return [Error(f"REPOSITORIES must be a dict, not {type(given).__name__}.", id="repositories.E001")]
    errors = _unknown_or_mistyped(given)
    if errors:
        return errors  # the values below cannot be compared yet
    conf = repositories()
    if conf.fetch_timeout <= 0:
        errors.append(Error("REPOSITORIES_FETCH_TIMEOUT must be positive.", id="repositories.E003"))
    for key in ("MAX_DOWNLOAD_SIZE", "MAX_DECOMPRESSED_SIZE"):
        if getattr(conf, key.lower()) < 1:
            errors.append(Error(f"REPOSITORIES_{key} must be at least 1 byte.", id="repositories.E003"))
    if conf.max_redirects < 0:
        errors.append(Error("REPOSITORIES_MAX_REDIRECTS must not be negative.", id="repositories.E003"))
    if not conf.user_agent.strip():
        errors.append(Error("REPOSITORIES_USER_AGENT must not be empty.", id="repositories.E003"))
    return errors


def _unknown_or_mistyped(given: Mapping[Any, Any]) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for key, value in given.items():
        kind = KNOWN_KEYS.get(key)
        if kind is None:
            known = ", ".join(sorted(KNOWN_KEYS))
            errors.append(
                Error(f"REPOSITORIES has an unknown key {key!r}; the known keys are {known}.", id="repositories.E001")
            )
            continue
        # A duration may be given as an int; bool is an int, but not a number here.
        expected = (int, float) if kind is float else (kind,)
        wrong = not isinstance(value, expected) or (isinstance(value, bool) and kind is not bool)
        if wrong or (isinstance(value, float) and not math.isfinite(value)):
            errors.append(
                Error(f"REPOSITORIES[{key!r}] must be {_KINDS[kind]}, not {value!r}.", id="repositories.E002")
            )
    return errors
