"""Run the benchmark of issue 4: ENQUEUE, DRAIN, LATENCY, SCALE, CEILING.

Usage: .venv/bin/python bench/run.py [--quick] [--only NAME ...] [--json PATH] [--record] [--no-peers]

Against DATABASE_URL's server if set, else the embedded one; always in a database of its own
(--database, "bench" by default), dropped and created afresh, migrated, and dropped at the end.
The code measured is the checkout this file is in.

ENQUEUE, DRAIN and LATENCY also measure the peer, pgqueuer 1.6 with its default settings, run
by turns with ours on the same server, in a database of its own ("<database>_pgqueuer") and
from a virtual environment of its own, made on first use (bench/peer.py). Not with --quick,
unless --peers; never with --no-peers.
"""

import argparse
import dataclasses
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Imported once the checkout is on sys.path: the script runs from anywhere (E402).
from bench.config import FULL, QUICK, Bench  # noqa: E402
from bench.database import BenchDatabase, Server  # noqa: E402
from bench.peer import PeerUnavailable, PgQueuerPeer  # noqa: E402

WORKLOADS = ("enqueue", "drain", "latency", "scale", "ceiling")
PEER_WORKLOADS = ("enqueue", "drain", "latency")  # the workloads pgqueuer is measured in too


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few hundred tasks, one run each (the smoke test)")
    parser.add_argument(
        "--only", nargs="+", choices=WORKLOADS, metavar="NAME", help=f"only these: {', '.join(WORKLOADS)}"
    )
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    parser.add_argument("--record", action="store_true", help="add the run to bench/RESULTS.md and bench/results/")
    parser.add_argument("--note", default="", help="a label for the run in RESULTS.md (e.g. 'before')")
    parser.add_argument("--runs", type=int, help="runs per figure (default 3, 1 with --quick)")
    parser.add_argument("--database", default="bench", help="the bench's own database (name starts with 'bench')")
    parser.add_argument("--keep", action="store_true", help="keep the database and the worker logs afterwards")
    parser.add_argument(
        "--peers",
        action=argparse.BooleanOptionalAction,
        help="measure pgqueuer beside ours in enqueue, drain and latency (default: yes, except with --quick)",
    )
    return parser.parse_args(argv)


def subprocess_env(database: BenchDatabase) -> dict[str, str]:
    """The environment of the bench's Django processes: its own database, the bench settings
    (which add the bench task types), and a pool limit that allows 16 workers."""
    return {
        **os.environ,
        "DATABASE_URL": database.url,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "TASKING_POOL_LIMIT": "64",
        "PYTHONUNBUFFERED": "1",
    }


def setup_django(env: dict[str, str], log_path: Path) -> None:
    """Django in this process, on the bench database; its log lines go to a file, so that
    the client's logging costs what it costs but does not fill the terminal."""
    os.environ.update({key: env[key] for key in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "TASKING_POOL_LIMIT")})
    import django

    django.setup()
    import logging

    stream = log_path.open("a")
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setStream(stream)


def exit_cleanly_on_signals() -> None:
    """SIGTERM and SIGINT raise in the main thread, so that the workers are stopped and the
    database dropped on the way out (a shell's background job even starts with SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.record and args.quick:
        print("bench: --record keeps full runs only; --quick figures are a smoke test", file=sys.stderr)
        return 2
    exit_cleanly_on_signals()
    sizes = QUICK if args.quick else FULL
    if args.runs:
        sizes = dataclasses.replace(sizes, runs=args.runs)
    selected = [name for name in WORKLOADS if not args.only or name in args.only]
    command = "bench/run.py " + shlex.join(argv)
    load_before = list(os.getloadavg())
    started = time.monotonic()

    server = Server.from_environment(ROOT)
    database = BenchDatabase(server, args.database)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    env = subprocess_env(database)
    with_peer = (not args.quick if args.peers is None else args.peers) and any(n in PEER_WORKLOADS for n in selected)
    peer = PgQueuerPeer(root=ROOT, server=server, database=f"{args.database}_pgqueuer", log_dir=log_dir)
    failed = False
    print(f"bench: database {args.database} on {server.host}:{server.port}; logs in {log_dir}", file=sys.stderr)
    try:
        database.create()
        database.migrate(ROOT, env)
        setup_django(env, log_dir / "harness.log")
        from bench import report
        from bench.workloads import ceiling, drain, enqueue, latency, scale

        modules = {"enqueue": enqueue, "drain": drain, "latency": latency, "scale": scale, "ceiling": ceiling}
        bench = Bench(root=ROOT, database=database, env=env, log_dir=log_dir, sizes=sizes)
        if with_peer:
            try:
                peer.setup()
                bench.peer = peer
                print(f"bench: peer pgqueuer {peer.versions} in database {peer.database.name}", file=sys.stderr)
            except PeerUnavailable as exc:
                bench.results["pgqueuer"] = {"skipped": f"its virtual environment could not be made: {exc}"}
                print(f"bench: pgqueuer skipped: {exc}", file=sys.stderr)
        load_after = {}
        for name in selected:
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            workload_started = time.monotonic()
            bench.results[name] = modules[name].run(bench)
            load_after[name] = os.getloadavg()[0]  # other work on the machine skews the figures
            print(f"bench: {name} done in {time.monotonic() - workload_started:.0f} s", file=sys.stderr, flush=True)
        full_report = {
            "meta": {
                "date": report.now(),
                "command": command,
                "note": args.note,
                "quick": args.quick,
                "runs": sizes.runs,
                "sizes": dataclasses.asdict(sizes),
                "server": "embedded" if server.embedded else f"{server.host}:{server.port}",
                "load_before": load_before,
                "load_after": load_after,
                "seconds": time.monotonic() - started,
                "machine": report.machine(ROOT),
                "peer": peer.describe() if bench.peer else None,
            },
            "results": bench.results,
        }
        print(report.table(bench.results))
        if args.json:
            report.write_json(args.json, full_report)
        if args.record:
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            report.write_json(ROOT / "bench" / "results" / f"{stamp}.json", full_report)
            report.record(ROOT / "bench" / "RESULTS.md", full_report)
        return 0
    except BaseException:
        failed = True
        traceback.print_exc()
        print(f"bench: failed; the worker logs are kept in {log_dir}", file=sys.stderr)
        return 1
    finally:
        close_django()
        peer.close()
        if not args.keep:
            database.drop()
            if with_peer:
                peer.drop()
            if not failed:
                shutil.rmtree(log_dir, ignore_errors=True)


def close_django() -> None:
    """Close this process's connection, so that dropping the database does not kill it."""
    if "django" in sys.modules:
        from django.apps import apps

        if apps.ready:
            from django.db import connections

            connections.close_all()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
