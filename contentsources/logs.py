"""The project's log filter: tracebacks only for unexpected errors."""

import logging


class RefusalsWithoutTraceback(logging.Filter):
    """Django logs a request it refuses as suspicious (a Host not allowed, too many fields) at
    ERROR, with the traceback of its own check. A refusal is expected: it becomes a WARNING line
    without one, so that a traceback always means an unexpected error."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("django.security."):
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True
