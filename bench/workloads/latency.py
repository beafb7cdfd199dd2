"""LATENCY: an idle pool; tasks come one at a time, 20 ms apart; how long until each starts?

Pickup latency = the handler body's start (`bench.pickup` records time.time() first thing)
minus the enqueue's commit (time.time() right after `client.enqueue` returns, which is after
the COMMIT and the client's log line, so the figure errs a few microseconds low). Both clocks
are this host's.

With the peer, one idle `pgq run` serves pgqueuer's `bench.pickup` beside our pool: after
both warm-ups, each run of ours is followed by the same run on pgqueuer's side (its client
enqueues, its handler appends its first `time.time()` to a file: bench/peer.py).
"""

import time
from contextlib import nullcontext

from django.db import connection

from bench import fixtures
from bench.config import Bench
from bench.stats import figure, percentile
from bench.workers import WorkerProcesses
from tasks import client

PICKUP = "bench.pickup"
WARM_UP_TASKS = 16
LISTEN_TIMEOUT = 15.0
PICKUP_TIMEOUT = 30.0
PEER_START_TIMEOUT = 60.0


def run(bench: Bench) -> dict:
    sizes = bench.sizes
    fixtures.reset()
    per_run, peer_runs = [], []
    with (
        WorkerProcesses(
            root=bench.root,
            env=bench.env,
            log_dir=bench.log_dir,
            processes=1,
            workers=sizes.latency_workers,
            types=[PICKUP],
            name="latency",
        ) as pool,
        bench.peer.pickup_consumer() if bench.peer else nullcontext() as peer,
    ):
        pool.wait_started()
        wait_listening(pool)
        measure(pool, WARM_UP_TASKS, gap=sizes.latency_gap)  # connections opened, statements prepared
        if peer:  # its start-up is waited for here: the first warm-up job waits for its first dequeue
            peer.latencies(WARM_UP_TASKS, sizes.latency_gap, timeout=PEER_START_TIMEOUT)
        for _ in range(sizes.runs):  # ours, then the peer's, each time; both pools idle meanwhile
            per_run.append(measure(pool, sizes.latency_tasks, gap=sizes.latency_gap))
            if peer:
                peer_runs.append(summarize(peer.latencies(sizes.latency_tasks, sizes.latency_gap)))
    fixtures.reset()
    if bench.peer:
        bench.peer_results(
            "latency",
            {
                "tasks": sizes.latency_tasks,
                "gap_ms": sizes.latency_gap * 1000,
                **{key: figure([r[key] for r in peer_runs], "ms") for key in ("p50", "p95", "p99", "max")},
            },
        )
    return {
        "tasks": sizes.latency_tasks,
        "gap_ms": sizes.latency_gap * 1000,
        "workers": sizes.latency_workers,
        **{key: figure([r[key] for r in per_run], "ms") for key in ("p50", "p95", "p99", "max")},
    }


def wait_listening(pool: WorkerProcesses) -> None:
    """Wait until the pool's listener has subscribed: before that a NOTIFY is lost, and the
    first tasks would wait for the pool's safety re-check instead."""
    deadline = time.monotonic() + LISTEN_TIMEOUT
    while time.monotonic() < deadline:
        pool.check_alive()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND query ILIKE 'LISTEN%%'"
            )
            if cursor.fetchone()[0] >= len(pool.pids):
                return
        time.sleep(0.05)
    raise TimeoutError(f"the pool's listener did not subscribe within {LISTEN_TIMEOUT}s")


def measure(pool: WorkerProcesses, count: int, *, gap: float) -> dict:
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE bench_pickups")
    committed = {}
    start = time.perf_counter()
    for n in range(count):
        time.sleep(max(0.0, start + n * gap - time.perf_counter()))
        task_id = client.enqueue(PICKUP, {"n": n})
        committed[task_id] = time.time()
    started = wait_pickups(pool, count)
    return summarize([(started[task_id] - at) * 1000 for task_id, at in committed.items()])


def summarize(latencies: list[float]) -> dict:
    return {
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "p99": percentile(latencies, 99),
        "max": max(latencies),
    }


def wait_pickups(pool: WorkerProcesses, count: int) -> dict:
    deadline = time.monotonic() + PICKUP_TIMEOUT
    while True:
        with connection.cursor() as cursor:
            cursor.execute("SELECT task_id, started FROM bench_pickups")
            rows = cursor.fetchall()
        if len(rows) >= count:
            return dict(rows)
        pool.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(rows)} of {count} tasks were picked up within {PICKUP_TIMEOUT}s")
        time.sleep(0.05)
