"""ENQUEUE: how fast one client queues tasks, one per transaction and all in one call.

The harness's Django connection is in autocommit, so each `client.enqueue` is a transaction
of its own, committed (and its NOTIFY sent) before the call returns.

With the peer, each run of ours is followed by the same run of pgqueuer's client (one
`Queries.enqueue` per job, autocommit, then one call for all), timed in its own process
after its connection is open (bench/peers/pgqueuer/client.py).
"""

import time

from bench import fixtures
from bench.config import Bench
from bench.stats import figure
from tasks import client


def run(bench: Bench) -> dict:
    sizes = bench.sizes
    peer = bench.peer
    single, bulk, peer_single, peer_bulk = [], [], [], []
    for _ in range(sizes.runs):  # ours, then the peer's, each time: they share the machine's state
        fixtures.reset()
        single.append(one_at_a_time(sizes.enqueue_single))
        if peer:
            peer.reset()
            peer_single.append(peer.enqueue_single(sizes.enqueue_single))
        fixtures.reset()
        bulk.append(in_one_call(sizes.enqueue_bulk))
        if peer:
            peer.reset()
            peer_bulk.append(peer.enqueue_bulk(sizes.enqueue_bulk))
    fixtures.reset()
    if peer:
        peer.reset()
        bench.peer_results(
            "enqueue",
            {
                "single": {"tasks": sizes.enqueue_single, "rate": figure(peer_single, "tasks/s")},
                "bulk": {"tasks": sizes.enqueue_bulk, "rate": figure(peer_bulk, "tasks/s")},
            },
        )
    return {
        "single": {"tasks": sizes.enqueue_single, "rate": figure(single, "tasks/s")},
        "bulk": {"tasks": sizes.enqueue_bulk, "rate": figure(bulk, "tasks/s")},
    }


def one_at_a_time(count: int) -> float:
    started = time.perf_counter()
    for n in range(count):
        client.enqueue(fixtures.NOOP, {"bench": "enqueue", "n": n})
    return count / (time.perf_counter() - started)


def in_one_call(count: int) -> float:
    payloads = [{"bench": "enqueue", "n": n} for n in range(count)]  # the caller's data, not timed
    started = time.perf_counter()
    client.enqueue_many(fixtures.NOOP, payloads)
    return count / (time.perf_counter() - started)
