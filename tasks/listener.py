"""The pool's one listening connection: queue wake-ups and cancel notifications."""

import logging
import threading
import uuid
from typing import Any, Protocol

import psycopg
from django.db import connection

from tasks.backoff import Backoff

logger = logging.getLogger(__name__)

QUEUE_CHANNEL = "tasks"
CANCEL_CHANNEL = "cancel_task"
# How long one wait for notifications lasts before the thread looks at its stop event: part
# of every shutdown, which must fit in the grace.
POLL = 0.1
# The listener only reads, so a connection that died without a word (a NAT or firewall
# dropping an idle flow, a host gone) would never fail: TCP keepalives probe it after 10 s of
# silence and give up after 3 unanswered probes 5 s apart, so the listener reconnects (and
# re-checks) within about 25 s. They also keep an idle flow alive through most NATs. libpq
# ignores them on a Unix socket.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}


def listen_params() -> dict[str, Any]:
    """Connection parameters of the listener: Django's, with the keepalives above."""
    params = connection.get_connection_params()
    for key in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(key, None)
    return {**params, **KEEPALIVES}


def listen_connection() -> psycopg.Connection[Any]:
    """A dedicated autocommit connection to the database of Django's settings."""
    return psycopg.connect(autocommit=True, **listen_params())


class Subscriber(Protocol):
    """What the listener tells (the worker pool)."""

    def wake(self) -> None: ...
    def recheck(self) -> None: ...
    def cancel(self, task_id: uuid.UUID) -> None: ...


class Listener:
    """Receives notifications on its own thread and hands them to the pool.

    The thread owns its psycopg connection. After every (re)connect it subscribes and then
    asks the pool to re-check, since notifications sent while it was away are lost.
    """

    def __init__(self, pool: Subscriber, stop: threading.Event):
        self._pool = pool
        self._stop = stop
        self.subscribed = threading.Event()

    def run(self) -> None:
        backoff = Backoff(self._stop)
        while not self._stop.is_set():
            try:
                with listen_connection() as conn:
                    conn.execute(f"LISTEN {QUEUE_CHANNEL}")
                    conn.execute(f"LISTEN {CANCEL_CHANNEL}")
                    self.subscribed.set()
                    backoff.succeeded()
                    self._pool.recheck()
                    while not self._stop.is_set():
                        for notification in conn.notifies(timeout=POLL):
                            self._dispatch(notification)
            except psycopg.Error as exc:
                self.subscribed.clear()
                logger.warning("listener lost its connection error=%r retry_in=%.1fs", exc, max(backoff.delay * 2, 0.5))
                backoff.failed()
        self.subscribed.clear()

    def _dispatch(self, notification: psycopg.Notify) -> None:
        if notification.channel == QUEUE_CHANNEL:
            self._pool.wake()
        elif notification.channel == CANCEL_CHANNEL:
            try:
                task_id = uuid.UUID(notification.payload)
            except ValueError:
                logger.warning("ignored a malformed cancel notification payload=%r", notification.payload)
                return
            self._pool.cancel(task_id)
