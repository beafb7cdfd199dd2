"""Database statements that a task's stop interrupts: a wait for a lock that another
transaction holds, or a long write, ends within STOP_POLL_INTERVAL of a cancel.

Within `interruptible_statements`, a thread of its own asks `should_stop` every
STOP_POLL_INTERVAL; once it answers true, a statement that this thread's connection is
running is cancelled (a PostgreSQL cancel request), and the block ends with Stopped. A cancel
request that reaches the server while no statement runs is ignored by it, so one is sent each
interval for as long as a statement runs.

The block belongs inside the caller's transaction: the rollback that follows comes after the
block, so it is never the statement cancelled.
"""

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.db import OperationalError, connection
from psycopg import pq

from repositories.exceptions import Stopped
from repositories.yum.fetch import STOP_POLL_INTERVAL
from repositories.yum.stopping import StopCheck

logger = logging.getLogger(__name__)

# How long the watch waits for the server to take a cancel request.
CANCEL_TIMEOUT = 5.0


@contextmanager
def interruptible_statements(should_stop: StopCheck, doing: str) -> Iterator[None]:
    """Run the block with its statements cancelled once `should_stop` answers true; Stopped
    (naming `doing`) then. `should_stop` must be thread-safe, as `Event.is_set` is."""
    connection.ensure_connection()
    raw = connection.connection
    assert isinstance(raw, psycopg.Connection)
    done = threading.Event()

    def watch() -> None:
        while not done.wait(STOP_POLL_INTERVAL):
            if should_stop() and raw.info.transaction_status == pq.TransactionStatus.ACTIVE:
                try:
                    raw.cancel_safe(timeout=CANCEL_TIMEOUT)
                except psycopg.Error as exc:  # the statement ends anyway, by itself or the stop checks
                    logger.warning("could not cancel a statement: %s", exc)

    watcher = threading.Thread(target=watch, name="statement-stop-watch", daemon=True)
    watcher.start()
    try:
        yield
    except OperationalError as exc:
        if isinstance(exc.__cause__, psycopg.errors.QueryCanceled) and should_stop():
            raise Stopped(f"{doing} stopped on request") from exc
        raise
    finally:
        done.set()
        watcher.join()
