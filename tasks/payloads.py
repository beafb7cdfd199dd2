"""Text and payloads as the queue stores them: what PostgreSQL's text and jsonb accept."""

import json
import re

from tasks.conf import tasking
from tasks.exceptions import InvalidPayload

# A NUL escaped in JSON text: \u0000 after an even number of backslashes (an odd one escapes the \).
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def serialize_payload(payload: object) -> str:
    """JSON text of a payload, or InvalidPayload saying why it cannot be stored."""
    try:
        text = json.dumps(payload, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(f"payload is not JSON-serialisable: {exc}") from None
    except RecursionError:
        raise InvalidPayload("payload is not JSON-serialisable: it is nested too deep") from None
    if _JSON_NUL.search(text):
        raise InvalidPayload("payload contains a NUL character, which PostgreSQL cannot store")
    try:
        size = len(text.encode())
    except UnicodeEncodeError:
        raise InvalidPayload("payload contains a lone surrogate, which is not UTF-8 text") from None
    limit = tasking().payload_limit
    if size > limit:
        raise InvalidPayload(f"payload is {size} bytes, over the limit of {limit} (TASKING_PAYLOAD_LIMIT)")
    return text


def is_storable_text(value: str) -> bool:
    """Whether PostgreSQL can store the text: UTF-8 (no lone surrogates, which is how Python
    keeps undecodable bytes of a command line) and no NUL."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in value
