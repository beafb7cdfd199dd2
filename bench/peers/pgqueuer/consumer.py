"""pgqueuer's consumers, as its documentation shows them: a factory for its own CLI,

    PYTHONPATH=<checkout> pgq run bench.peers.pgqueuer.consumer:noop

with nothing but the factory given, so that `pgq run` runs them with its default settings:
one asyncpg connection (from the libpq variables), `PgQueuer.run` with batch_size 10, no
max_concurrent_tasks (unlimited), dequeue_timeout 30 s, heartbeat_timeout 30 s, continuous
mode, on uvloop; the entrypoint with concurrency_limit 0 (unlimited).
"""

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job

NOOP = "diagnostics.noop"  # the names of our task types, so that the rows are alike
PICKUP = "bench.pickup"
PICKUP_FILE = "BENCH_PICKUP_FILE"  # where `pickup` appends "<job id> <time.time()>" lines


@asynccontextmanager
async def noop() -> AsyncIterator[PgQueuer]:
    """DRAIN: a handler that does nothing."""
    connection = await asyncpg.connect()
    try:
        pgq = PgQueuer(AsyncpgDriver(connection))

        @pgq.entrypoint(NOOP)
        async def run(job: Job) -> None:
            pass

        yield pgq
    finally:
        await connection.close()


@asynccontextmanager
async def pickup() -> AsyncIterator[PgQueuer]:
    """LATENCY: a handler that records when its body starts, like our `bench.pickup`.

    The clock is read first; the line that stores it is written after, to a file (line
    buffered, one write per job) rather than to a table, so that it takes no turn on the
    consumer's only connection.
    """
    connection = await asyncpg.connect()
    try:
        with open(os.environ[PICKUP_FILE], "a", buffering=1) as out:
            pgq = PgQueuer(AsyncpgDriver(connection))

            @pgq.entrypoint(PICKUP)
            async def run(job: Job) -> None:
                started = time.time()
                out.write(f"{job.id} {started!r}\n")

            yield pgq
    finally:
        await connection.close()
