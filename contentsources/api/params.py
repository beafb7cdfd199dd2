"""Values of the path and the query string, checked before they reach a query: a value the
database cannot store or compare (a NUL, a malformed UUID) is the caller's 400, never a 500."""

import uuid
from collections.abc import Sequence

from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

TEXT_LIMIT = 2048


def text(request: Request, name: str, *, limit: int = TEXT_LIMIT) -> str | None:
    """A text parameter of the query string, None when absent or empty."""
    value = request.query_params.get(name)
    if not value:
        return None
    if len(value) > limit or not _storable(value):
        raise ValidationError({name: [f"must be at most {limit} printable characters"]})
    return value


def choice(request: Request, name: str, choices: Sequence[str]) -> str | None:
    """One of `choices`, None when the parameter is absent (given empty, it is none of them)."""
    value = request.query_params.get(name)
    if value is None:
        return None
    if value not in choices:
        raise ValidationError({name: [f"must be one of {', '.join(choices)}, not {value[:40]!r}"]})
    return value


def uuid_value(value: str, name: str) -> uuid.UUID:
    """A UUID given in the path or the query string ("" too is not one)."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValidationError({name: [f"not a UUID: {value[:40]!r}"]}) from None


def _storable(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return value.isprintable()
