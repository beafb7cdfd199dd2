"""Where a drained task's time goes: py-spy on one `runworkers` 1x8, plus CPU and commit counts.

Usage: .venv/bin/python bench/profile_drain.py [--label before] [--tasks 20000] [--no-py-spy]

One pool is started and warmed up (its connections opened), then three drains of `--tasks`
noops are measured, each queued in one call while the pool idles:
1. unprofiled: wall time, CPU time of the worker process and of its PostgreSQL backends,
   and commits (pg_stat_database) per task, and log bytes per task;
2. py-spy, CPU only (active threads): a flame graph SVG and the raw stacks, summarised by
   thread and by category;
3. py-spy with --idle: the same raw stacks including waits, which shows how much of each
   thread's wall time is a database round trip;
4. py-spy with --gil: only the thread holding the GIL, which shows how busy the interpreter
   is (the share of samples with a holder) and with what.
The profiles go to bench/profiles/drain-1x8-<label>-*; the summary is printed and written
beside them.
"""

import argparse
import gzip
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Imported once the checkout is on sys.path: the script runs from anywhere (E402).
from bench.database import BenchDatabase, Server  # noqa: E402
from bench.run import close_django, setup_django, subprocess_env  # noqa: E402

WARM_UP_TASKS = 200
DRAIN_TIMEOUT = 600.0
PY_SPY_STOP_TIMEOUT = 60.0

# A sample's category is that of the frame nearest its leaf whose file matches: first match
# wins, leaf to root. The order of this table breaks ties within one frame.
CATEGORIES = [
    ("logging", re.compile(r"\((logging/|tasks/log\.py)")),
    # psycopg waits for the server in C (wait_c), under Connection.wait or in waiting.py.
    (
        "database round trip (waiting on the server)",
        re.compile(r"^(\w+\.)?wait \(psycopg/connection\.py|\(psycopg/waiting\.py"),
    ),
    ("psycopg (client side)", re.compile(r"\(psycopg/")),
    ("django (connection, atomic, ORM)", re.compile(r"\(django/")),
    # Waiting for a task or an end, or (in CPU samples) for the GIL after such a wait.
    ("threading waits (queue, condition, event)", re.compile(r"\((threading|queue)\.py")),
    ("handler", re.compile(r"\(tasks/handlers\.py")),
    ("pool and queue code (tasks/)", re.compile(r"\(tasks/")),
]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", default="current", help="names the profile files, e.g. 'before'")
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "profiles")
    parser.add_argument("--database", default="bench_profile")
    parser.add_argument("--no-py-spy", action="store_true", help="only the unprofiled measurement")
    return parser.parse_args(argv)


def main(argv) -> int:
    args = parse_args(argv)
    py_spy = None if args.no_py_spy else (shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"))
    if py_spy and not Path(py_spy).exists():
        print("py-spy not found: .venv/bin/pip install py-spy (or use --no-py-spy)", file=sys.stderr)
        return 2
    server = Server.from_environment(ROOT)
    database = BenchDatabase(server, args.database)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    env = subprocess_env(database)
    database.create()
    try:
        database.migrate(ROOT, env)
        setup_django(env, log_dir / "harness.log")
        from bench import fixtures
        from bench.workers import WorkerProcesses
        from bench.workloads.latency import wait_listening

        fixtures.reset()
        with WorkerProcesses(
            root=ROOT,
            env=env,
            log_dir=log_dir,
            processes=1,
            workers=args.workers,
            types=[fixtures.NOOP],
            name="profile",
        ) as pool:
            pool.wait_started()
            wait_listening(pool)
            drain(pool, WARM_UP_TASKS)
            pid, log_path = pool.pids[0], pool.log_paths[0]

            plain = measure(pool, args.tasks, log_path)
            print(report_plain(plain, args))
            if py_spy:
                args.out.mkdir(parents=True, exist_ok=True)
                stem = args.out / f"drain-1x{args.workers}-{args.label}"
                svg = Path(f"{stem}-cpu.svg")
                raw = {mode: Path(f"{stem}-{mode}.txt") for mode in ("cpu", "wall", "gil")}
                runs = [
                    (svg, ["--format", "flamegraph"]),
                    (raw["cpu"], ["--format", "raw"]),
                    (raw["wall"], ["--format", "raw", "--idle"]),
                    (raw["gil"], ["--format", "raw", "--gil"]),
                ]
                lines = [report_plain(plain, args)]
                for output, extra in runs:
                    with spying(py_spy, pid, output, extra + ["--rate", str(args.rate)]) as spy:
                        profiled = measure(pool, args.tasks, log_path)
                    lines.append(
                        f"\n{output.name}: drained at {profiled['rate']:,.0f} tasks/s under py-spy, "
                        f"{spy.seconds:.1f} s recorded"
                    )
                    if output == raw["gil"]:
                        held = sum(int(line.rpartition(" ")[2]) for line in output.read_text().splitlines())
                        lines.append(
                            f"  GIL held in {held:,} samples: {held / (spy.seconds * args.rate):.0%} of "
                            f"{spy.seconds:.1f} s x {args.rate} Hz (py-spy counted {spy.samples} samples)"
                        )
                lines.append(summarize(raw["cpu"], "CPU samples (threads not blocked in a system call)"))
                lines.append(summarize(raw["wall"], "wall-clock samples (--idle: waits included)"))
                lines.append(summarize(raw["gil"], "GIL samples (the thread holding the GIL)"))
                summary = "\n".join(lines)
                print(summary[len(lines[0]) :])
                Path(f"{stem}-summary.txt").write_text(summary + "\n")
                for path in raw.values():
                    compress(path)
    finally:
        close_django()
        database.drop()
        shutil.rmtree(log_dir, ignore_errors=True)
    return 0


def drain(pool, tasks: int) -> list:
    from bench import fixtures

    ids = fixtures.queue_noops(tasks, tag="profile")
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while True:
        pool.check_alive()
        if fixtures.ready_count(at_most=1) == 0 and fixtures.outcome(ids)["left"] == 0:
            return ids
        if time.monotonic() > deadline:
            raise TimeoutError("the profiled drain did not finish")
        time.sleep(0.05)


def measure(pool, tasks: int, log_path: Path) -> dict:
    """Drain `tasks` noops; count the CPU, commits and log bytes they cost."""
    from bench import fixtures

    time.sleep(1.0)  # let the pool go idle, and the server flush its statistics
    before = snapshot(pool, log_path)
    ids = drain(pool, tasks)
    time.sleep(1.5)
    after = snapshot(pool, log_path)
    state = fixtures.outcome(ids)
    assert state["completed"] == tasks, state
    wall = state["last_finish"].timestamp() - state["first_start"].timestamp()
    backend_cpu = sum(cpu - before["backends"].get(pid, 0.0) for pid, cpu in after["backends"].items())
    return {
        "tasks": tasks,
        "rate": tasks / wall,
        "wall_us": wall / tasks * 1e6,
        "worker_cpu_us": (after["worker"] - before["worker"]) / tasks * 1e6,
        "postgres_cpu_us": backend_cpu / tasks * 1e6,
        "backends": len(after["backends"]),
        "commits": (after["commits"] - before["commits"]) / tasks,
        "log_bytes": (after["log_bytes"] - before["log_bytes"]) / tasks,
    }


def snapshot(pool, log_path: Path) -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        pids = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        commits = cursor.fetchone()[0]
    backends = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        backends[pid] = times.user + times.system
    return {
        "worker": pool.cpu_seconds(),
        "backends": backends,
        "commits": commits,
        "log_bytes": log_path.stat().st_size,
    }


class spying:
    """py-spy recording one process for the duration of a `with` block; SIGINT makes it write."""

    def __init__(self, py_spy: str, pid: int, output: Path, extra: list[str]):
        # py-spy writes its command line into the SVG: relative names keep this machine's paths out.
        self.executable = py_spy
        self.command = ["py-spy", "record", "--pid", str(pid), "--threads", "--output", output.name, *extra]
        self.output = output

    def __enter__(self):
        self.process = subprocess.Popen(
            self.command,
            executable=self.executable,
            cwd=self.output.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.started = time.monotonic()
        time.sleep(1.0)  # attached, sampling
        if self.process.poll() is not None:
            raise RuntimeError(f"py-spy exited: {self.process.stdout.read()}")
        return self

    def __exit__(self, *exc_info):
        self.seconds = time.monotonic() - self.started
        self.process.send_signal(signal.SIGINT)
        try:
            output, _ = self.process.communicate(timeout=PY_SPY_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
            raise RuntimeError("py-spy did not stop") from None
        match = re.search(r"Samples: (\d+)", output)
        self.samples = int(match.group(1)) if match else None


def report_plain(m: dict, args) -> str:
    return "\n".join(
        [
            f"unprofiled drain of {m['tasks']:,} noops, 1 x {args.workers} workers:",
            f"  rate {m['rate']:,.0f} tasks/s = {m['wall_us']:.0f} us of wall time per task",
            f"  CPU per task: runworkers process {m['worker_cpu_us']:.0f} us, "
            f"its {m['backends']} PostgreSQL backends {m['postgres_cpu_us']:.0f} us",
            f"  commits per task {m['commits']:.2f}; log bytes per task {m['log_bytes']:.0f}",
        ]
    )


def summarize(raw: Path, title: str) -> str:
    """Samples per thread group and per category, from py-spy's raw (collapsed) stacks."""
    by_thread: dict[str, Counter] = defaultdict(Counter)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        thread = re.sub(r"^thread \(\w+\): ", "", frames[0])
        thread = re.sub(r"^worker-\d+$", "worker-*", thread)
        by_thread[thread][categorize(frames[1:])] += int(count)
    total = sum(sum(c.values()) for c in by_thread.values())
    lines = [
        f"\n{raw.name}: {title}, {total:,} samples",
        "| thread | category | share of all samples |",
        "|---|---|---:|",
    ]
    for thread, counts in sorted(by_thread.items(), key=lambda item: -sum(item[1].values())):
        for category, count in counts.most_common():
            lines.append(f"| {thread} | {category} | {count / total:.1%} |")
    overall = Counter()
    for counts in by_thread.values():
        overall.update(counts)
    lines.append("\nall threads:")
    lines += [f"  {category}: {count / total:.1%}" for category, count in overall.most_common()]
    return "\n".join(lines)


def compress(path: Path) -> None:
    """Raw stacks gzipped (a tenth of the size): `gunzip -k` them for speedscope or flamegraph.pl."""
    with path.open("rb") as source, gzip.open(f"{path}.gz", "wb") as target:
        shutil.copyfileobj(source, target)
    path.unlink()


def categorize(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, pattern in CATEGORIES:
            if pattern.search(frame):
                return name
    return "other"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
