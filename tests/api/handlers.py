"""Task types of the API tests, registered when this module is imported (by conftest)."""

from tasks.registry import handler

# A type users may cancel whose failures are retried: a failed task waits for its retry.
RETRIED = "test.api.retried"


@handler(RETRIED, cancellable=True, requeueable=True)
def retried(context):
    raise RuntimeError("fails, to be retried")
