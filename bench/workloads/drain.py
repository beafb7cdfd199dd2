"""DRAIN: tasks already queued, then `runworkers` starts; how fast are they all completed?

Meanwhile the harness polls whether a ready task is left (a scan that stops at the first
one), then whether all ours completed. The rate is read from the `tasks` table:
tasks / (last finished_at - first started_at), the pool's own throughput. The rate from the
moment the processes were spawned, which adds the interpreter's and Django's start-up, is
kept beside it.

With the peer, each run of ours is followed by the same drain on pgqueuer's side: as many
`pgq run` processes as ours has, each with pgqueuer's default concurrency, its times read from
its own log table (bench/peer.py).
"""

import time

from bench import fixtures
from bench.config import Bench
from bench.stats import figure
from bench.workers import WorkerProcesses

POLL_INTERVAL = 0.05
MIB = 1024 * 1024


def run(bench: Bench) -> dict:
    sizes = bench.sizes
    results, peer_results = {}, {}
    for processes, workers in sizes.drain_layouts:
        runs, peer_runs = [], []
        for _ in range(sizes.runs):  # ours, then the peer's, each time: they share the machine's state
            fixtures.reset()
            runs.append(drain_once(bench, processes=processes, workers=workers, tasks=sizes.drain_tasks))
            if bench.peer:
                peer_runs.append(bench.peer.drain_once(processes=processes, tasks=sizes.drain_tasks))
        results[f"{processes}x{workers}"] = summarize(runs)
        if bench.peer:
            peer_results[str(processes)] = summarize(peer_runs)  # its default concurrency per process
    if bench.peer:
        bench.peer_results("drain", peer_results)
    return results


def summarize(runs: list[dict]) -> dict:
    return {
        "tasks": runs[0]["tasks"],
        "rate": figure([r["rate"] for r in runs], "tasks/s"),
        "rate_from_spawn": figure([r["rate_from_spawn"] for r in runs], "tasks/s"),
        "peak_rss": figure([r["peak_rss_mib"] for r in runs], "MiB"),
    }


def drain_once(bench: Bench, *, processes: int, workers: int, tasks: int) -> dict:
    """Queue `tasks` noops, start the workers, wait until all are completed, stop the workers."""
    ids = fixtures.queue_noops(tasks)
    fixtures.analyze()
    others = fixtures.ready_count() - tasks  # ready tasks that are not ours (SCALE's blocker)
    deadline = time.monotonic() + 60 + tasks / 20  # 20 tasks/s would be a broken pool
    with WorkerProcesses(
        root=bench.root,
        env=bench.env,
        log_dir=bench.log_dir,
        processes=processes,
        workers=workers,
        types=[fixtures.NOOP],
        name="drain",
    ) as pool:
        while True:
            pool.check_alive()
            if fixtures.ready_count(at_most=others + 1) <= others:  # all claimed: wait for the last runs
                state = fixtures.outcome(ids)
                if state["left"] == 0:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{tasks} tasks not drained by {processes}x{workers} workers in time")
            time.sleep(POLL_INTERVAL)
        spawned_at = pool.spawned_at
        peak_rss = max(pool.peak_rss.values(), default=0)
    if state["completed"] != tasks:
        raise RuntimeError(f"only {state['completed']} of {tasks} tasks completed (others failed or were canceled)")
    first, last = state["first_start"].timestamp(), state["last_finish"].timestamp()
    return {
        "tasks": tasks,
        "rate": tasks / (last - first),
        "rate_from_spawn": tasks / (last - spawned_at),
        "peak_rss_mib": peak_rss / MIB,
    }
