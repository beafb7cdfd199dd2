"""What the server spends per task on the dispatcher's statements alone, and on what.

Usage: .venv/bin/python bench/statement_cost.py [--tasks 10000] [--batch 8] [--runs 3]
       [--plan-cache-mode force_custom_plan|force_generic_plan|auto] [--drop-index NAME ...]

No pool, no worker, no handler: one connection calls `queue.finish_and_claim` in a loop, each
call recording the ends of the runs the previous call claimed and claiming `--batch` more,
until `--tasks` noops are done; as the dispatcher does with workers that take no time. Prints,
per run, tasks/s and the CPU time per task of the server's backend and of this process.

`--plan-cache-mode` runs the statements under that setting (the project's is
force_custom_plan: each execution is planned); `--drop-index` drops indexes of `tasks`
first, to see what their upkeep costs. In a database of its own (`--database`, created,
migrated and dropped), on DATABASE_URL's server or the embedded one.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Imported once the checkout is on sys.path: the script runs from anywhere (E402).
from bench.database import BenchDatabase, Server  # noqa: E402
from bench.run import close_django, setup_django, subprocess_env  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=8, help="runs claimed (and ended) per call")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--plan-cache-mode", choices=["force_custom_plan", "force_generic_plan", "auto"])
    parser.add_argument("--drop-index", nargs="*", default=[], metavar="NAME")
    parser.add_argument("--database", default="bench_statements")
    return parser.parse_args(argv)


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def drain(tasks: int, batch: int) -> str:
    from django.db import connection

    from bench import fixtures
    from tasks import client, queue
    from tasks.queue import Ending, Outcome

    client.enqueue_many(fixtures.NOOP, [{}] * tasks)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE tasks")
        cursor.execute("SELECT pg_backend_pid()")
        backend = psutil.Process(cursor.fetchone()[0])
    me = psutil.Process()
    backend_cpu, my_cpu, started = cpu_seconds(backend), cpu_seconds(me), time.perf_counter()
    done, ends = 0, []
    while True:
        recorded = queue.finish_and_claim(ends, [fixtures.NOOP], batch, worker="statement-cost")
        done += len(ends)
        ends = [Outcome(run, Ending.COMPLETED, duration=0.0) for run in recorded.claimed]
        if not ends:
            break
    wall = time.perf_counter() - started
    backend_cpu, my_cpu = cpu_seconds(backend) - backend_cpu, cpu_seconds(me) - my_cpu
    return (
        f"{done:,} tasks, {done / wall:,.0f}/s: wall {wall / done * 1e6:.0f} us a task; CPU a task: "
        f"backend {backend_cpu / done * 1e6:.0f} us, this process {my_cpu / done * 1e6:.0f} us"
    )


def main(argv) -> int:
    args = parse_args(argv)
    database = BenchDatabase(Server.from_environment(ROOT), args.database)
    env = subprocess_env(database)
    database.create()
    try:
        database.migrate(ROOT, env)
        setup_django(env, Path(tempfile.mkdtemp(prefix="bench-statements-")) / "harness.log")
        from django.db import connection

        with connection.cursor() as cursor:
            for name in args.drop_index:
                cursor.execute(f'DROP INDEX "{name}"')
            if args.plan_cache_mode:
                cursor.execute(f"SET plan_cache_mode = {args.plan_cache_mode}")
            cursor.execute("SHOW plan_cache_mode")
            mode = cursor.fetchone()[0]
        print(f"plan_cache_mode={mode}, batch {args.batch}, indexes dropped: {', '.join(args.drop_index) or 'none'}")
        for run in range(1, args.runs + 1):
            print(f"run {run}: {drain(args.tasks, args.batch)}", flush=True)
        close_django()
    finally:
        database.drop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
