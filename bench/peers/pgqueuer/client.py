"""pgqueuer's client side of the bench: jobs queued with its `Queries.enqueue`, as its
producer example does (one asyncpg connection from the libpq variables, on uvloop). Outside a
transaction, each call is a statement in autocommit: committed (and the table's NOTIFY sent)
before it returns.

    python -m bench.peers.pgqueuer.client single --count 5000    # ENQUEUE, one job per call
    python -m bench.peers.pgqueuer.client bulk --count 20000     # ENQUEUE, all in one call
    python -m bench.peers.pgqueuer.client queue --count 20000    # DRAIN's jobs, one call, untimed
    python -m bench.peers.pgqueuer.client latency --count 200 --gap 0.02

Each prints one JSON object on stdout: {"rate": jobs/s} for single and bulk, {"jobs": n} for
queue, {"committed": [[job id, time.time() just after its enqueue returned], ...]} for latency.
The connection is opened before any clock starts.
"""

import argparse
import asyncio
import json
import sys
import time

import asyncpg
import uvloop
from pgqueuer.db import AsyncpgDriver
from pgqueuer.queries import Queries

from bench.peers.pgqueuer.consumer import NOOP, PICKUP


def payload(tag: str, n: int) -> bytes:
    """The payload of our side's task, {"bench": tag, "n": n}, as the bytes pgqueuer carries."""
    return json.dumps({"bench": tag, "n": n}).encode()


async def single(queries: Queries, count: int) -> dict:
    started = time.perf_counter()
    for n in range(count):
        await queries.enqueue(NOOP, payload("enqueue", n))
    return {"rate": count / (time.perf_counter() - started)}


async def bulk(queries: Queries, count: int) -> dict:
    entrypoints, payloads, priorities = [NOOP] * count, [payload("enqueue", n) for n in range(count)], [0] * count
    started = time.perf_counter()  # the caller's data above is not timed
    await queries.enqueue(entrypoints, payloads, priorities)
    return {"rate": count / (time.perf_counter() - started)}


async def queue(queries: Queries, count: int) -> dict:
    ids = await queries.enqueue([NOOP] * count, [payload("drain", n) for n in range(count)], [0] * count)
    return {"jobs": len(ids)}


async def latency(queries: Queries, count: int, gap: float) -> dict:
    committed = []
    start = time.perf_counter()
    for n in range(count):
        await asyncio.sleep(max(0.0, start + n * gap - time.perf_counter()))
        (job_id,) = await queries.enqueue(PICKUP, payload("pickup", n))
        committed.append([job_id, time.time()])
    return {"committed": committed}


async def main(args: argparse.Namespace) -> dict:
    connection = await asyncpg.connect()
    try:
        queries = Queries(AsyncpgDriver(connection))
        if args.command == "latency":
            return await latency(queries, args.count, args.gap)
        return await {"single": single, "bulk": bulk, "queue": queue}[args.command](queries, args.count)
    finally:
        await connection.close()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("single", "bulk", "queue", "latency"))
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--gap", type=float, default=0.020, help="seconds between latency's jobs")
    return parser.parse_args(argv)


if __name__ == "__main__":
    print(json.dumps(uvloop.run(main(parse_args(sys.argv[1:])))))
