"""Back off after database errors, so that no loop spins while the database is away."""

import threading

from django.db import connection

FIRST_DELAY = 0.5
MAX_DELAY = 10.0


class Backoff:
    """Doubling waits after consecutive failures, reset by a success; a wait ends early on `stop`."""

    def __init__(self, stop: threading.Event):
        self._stop = stop
        self.delay = 0.0

    def failed(self) -> None:
        """Drop this thread's Django connection (it may be broken) and wait before the next try."""
        connection.close()
        self.delay = min(max(self.delay * 2, FIRST_DELAY), MAX_DELAY)
        self._stop.wait(self.delay)

    def succeeded(self) -> None:
        self.delay = 0.0
