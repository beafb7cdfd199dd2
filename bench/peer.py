"""The peer: pgqueuer 1.6, measured beside ours on the same server, in the same run.

pgqueuer runs from a virtual environment of its own (`bench/.peers/pgqueuer-venv`, made once
with this Python from `bench/peers/pgqueuer-requirements.txt`, remade when that file changes),
never from the project's. Its programs are `bench/peers/pgqueuer/`: the consumers, started
with its CLI (`pgq run <factory>`, nothing else given: its default settings), and a client
that queues with its `Queries.enqueue`. Its schema is installed with `pgq install` into a
database of its own on the bench's server (`<bench database>_pgqueuer`), created and dropped
like ours.

The harness reads pgqueuer's own log table for the DRAIN's times: pgqueuer logs each job's
pick and end in `pgqueuer_log` (status 'picked' in the statement that claims it, 'successful'
in the statement that deletes it from `pgqueuer` once its handler returned; `created` is that
statement's now()).
"""

import hashlib
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg

from bench.database import BenchDatabase, Server
from bench.workers import WorkerProcesses

NAME = "pgqueuer"
NOOP = "diagnostics.noop"  # bench/peers/pgqueuer/consumer.py's entrypoints
PICKUP = "bench.pickup"
VERSIONS_OF = ("pgqueuer", "asyncpg", "uvloop")
# What `pgq run <factory>` runs with when given nothing else (pgqueuer 1.6.0's CLI and
# QueueManager.run): bench/README.md, "The peer".
DEFAULTS = {
    "batch_size": 10,
    "max_concurrent_tasks": None,
    "entrypoint_concurrency_limit": 0,
    "dequeue_timeout_s": 30.0,
    "heartbeat_timeout_s": 30.0,
    "log_aggregation_interval_s": 30.0,
    "mode": "continuous",
    "log_level": "INFO",
    "connection": "one asyncpg connection per process",
    "event_loop": "uvloop",
}
INSTALL_TIMEOUT = 600.0
CLIENT_TIMEOUT = 600.0
POLL_INTERVAL = 0.05
PICKUP_TIMEOUT = 30.0
START_TIMEOUT = 60.0


class PeerUnavailable(Exception):
    """The peer's virtual environment could not be made (no network, no wheel...)."""


def venv_dir(root: Path) -> Path:
    return root / "bench" / ".peers" / "pgqueuer-venv"


def ensure_venv(root: Path) -> Path:
    """The peer's Python, its virtual environment made first if missing or out of date."""
    venv = venv_dir(root)
    requirements = root / "bench" / "peers" / "pgqueuer-requirements.txt"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    wanted = hashlib.sha256(requirements.read_bytes() + sys.version.encode()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return python
    print(f"bench: making pgqueuer's virtual environment ({venv.relative_to(root)}) ...", file=sys.stderr, flush=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(requirements)],
    ]
    for step in steps:
        try:
            result = subprocess.run(step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PeerUnavailable(f"{' '.join(step[:4])}: {exc}") from exc
        if result.returncode != 0:
            raise PeerUnavailable(f"{' '.join(step[:4])} failed:\n{result.stderr[-2000:]}")
    stamp.write_text(wanted + "\n")
    return python


class PgQueuerPeer:
    """pgqueuer's side of the run: its database, its processes, its figures."""

    def __init__(self, *, root: Path, server: Server, database: str, log_dir: Path):
        self.root = root
        self.server = server
        self.database = BenchDatabase(server, database)
        self.log_dir = log_dir
        self.python = venv_dir(root) / "bin" / "python"
        self.versions: dict[str, str] = {}
        self._connection: psycopg.Connection | None = None

    # --- lifetime -------------------------------------------------------------------------

    def setup(self) -> None:
        """The virtual environment (PeerUnavailable if it cannot be made), then the database
        with pgqueuer's schema."""
        self.python = ensure_venv(self.root)
        self.versions = json.loads(
            self._run(
                [
                    str(self.python),
                    "-c",
                    "import importlib.metadata as m, json, sys; "
                    "print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))",
                    *VERSIONS_OF,
                ]
            )
        )
        self.database.create()
        self._run([str(self.pgq), "install"])

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def drop(self) -> None:
        self.close()
        self.database.drop()

    @property
    def pgq(self) -> Path:
        """pgqueuer's CLI, as its documentation runs it."""
        return self.python.parent / "pgq"

    def describe(self) -> dict:
        """For the run's JSON and RESULTS.md."""
        return {"name": NAME, "versions": self.versions, "database": self.database.name, "settings": DEFAULTS}

    # --- plumbing -------------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """The peer's programs see the libpq variables of its database and nothing of ours
        (no DATABASE_URL, no PGQUEUER_* setting that would change a default)."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PG", "DJANGO_", "TASKING_"))
            and key not in ("DATABASE_URL", "PYTHONPATH", "VIRTUAL_ENV")
        }
        return {
            **env,
            **self.server.libpq_env(self.database.name),
            "PYTHONPATH": str(self.root),  # bench.peers.pgqueuer, for `pgq run` and the client
            "PYTHONUNBUFFERED": "1",
        }

    def _run(self, command: list[str], timeout: float = CLIENT_TIMEOUT) -> str:
        result = subprocess.run(command, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command[:4])} failed ({result.returncode}):\n{result.stderr[-4000:]}")
        return result.stdout

    def client(self, *args: str) -> dict:
        """Run bench/peers/pgqueuer/client.py with these arguments; its JSON answer."""
        return json.loads(self._run([str(self.python), "-m", "bench.peers.pgqueuer.client", *args]))

    @property
    def connection(self) -> psycopg.Connection:
        """The harness's own connection to the peer's database, for resets and readings."""
        if self._connection is None:
            self._connection = psycopg.connect(self.server.conninfo(self.database.name), autocommit=True)
        return self._connection

    def reset(self) -> None:
        """Empty every table pgqueuer writes to (the queue, its log, its statistics)."""
        self.connection.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")

    def analyze(self) -> None:
        self.connection.execute("ANALYZE pgqueuer")
        self.connection.execute("ANALYZE pgqueuer_log")

    def consumers(self, processes: int, factory: str, name: str, env: dict[str, str] | None = None) -> "Consumers":
        return Consumers(
            root=self.root,
            env={**self.env, **(env or {})},
            log_dir=self.log_dir,
            processes=processes,
            workers=0,
            types=[],
            name=name,
            pgq=str(self.pgq),
            factory=f"bench.peers.pgqueuer.consumer:{factory}",
        )

    # --- ENQUEUE --------------------------------------------------------------------------

    def enqueue_single(self, count: int) -> float:
        return self.client("single", "--count", str(count))["rate"]

    def enqueue_bulk(self, count: int) -> float:
        return self.client("bulk", "--count", str(count))["rate"]

    # --- DRAIN ----------------------------------------------------------------------------

    def drain_once(self, *, processes: int, tasks: int) -> dict:
        """Queue `tasks` no-op jobs, start `processes` × `pgq run`, wait until all are done,
        stop them: the figures of ours (bench/workloads/drain.py), read from pgqueuer_log."""
        self.reset()
        queued = self.client("queue", "--count", str(tasks))["jobs"]
        if queued != tasks:
            raise RuntimeError(f"pgqueuer queued {queued} of {tasks} jobs")
        self.analyze()
        deadline = time.monotonic() + 60 + tasks / 20  # 20 jobs/s would be a broken consumer
        with self.consumers(processes, "noop", name="pgqueuer-drain") as pool:
            while True:
                pool.check_alive()
                if not self._queued_left() and not self._rows_left():
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{tasks} jobs not drained by {processes} pgqueuer processes in time")
                time.sleep(POLL_INTERVAL)
            spawned_at = pool.spawned_at
            peak_rss = max(pool.peak_rss.values(), default=0)
        successful, other, first_pick, last_success = self.connection.execute(
            """
            SELECT count(*) FILTER (WHERE status = 'successful'),
                   count(*) FILTER (WHERE status NOT IN ('queued', 'picked', 'successful')),
                   min(created) FILTER (WHERE status = 'picked'),
                   max(created) FILTER (WHERE status = 'successful')
            FROM pgqueuer_log WHERE entrypoint = %s
            """,
            [NOOP],
        ).fetchone()
        if successful != tasks or other:
            raise RuntimeError(f"pgqueuer: {successful} of {tasks} jobs successful, {other} ended otherwise")
        first, last = first_pick.timestamp(), last_success.timestamp()
        return {
            "tasks": tasks,
            "rate": tasks / (last - first),
            "rate_from_spawn": tasks / (last - spawned_at),
            "peak_rss_mib": peak_rss / (1024 * 1024),
        }

    def _queued_left(self) -> bool:
        """A queued job left? On pgqueuer's own partial index of queued jobs, from its head."""
        return bool(
            self.connection.execute(
                "SELECT count(*) FROM (SELECT FROM pgqueuer WHERE entrypoint = %s AND status = 'queued' "
                "ORDER BY priority DESC, id LIMIT 1) AS queued",
                [NOOP],
            ).fetchone()[0]
        )

    def _rows_left(self) -> bool:
        """A job not yet done? pgqueuer deletes a job's row when it logs its end."""
        return bool(self.connection.execute("SELECT count(*) FROM pgqueuer").fetchone()[0])

    # --- LATENCY --------------------------------------------------------------------------

    @contextmanager
    def pickup_consumer(self):
        """One idle `pgq run` serving `bench.pickup`, which appends each job's start to a file."""
        path = self.log_dir / f"pgqueuer-pickups-{int(time.time() * 1000)}.txt"
        path.touch()
        self.reset()
        with self.consumers(1, "pickup", name="pgqueuer-latency", env={"BENCH_PICKUP_FILE": str(path)}) as pool:
            yield PickupConsumer(self, pool, path)
        self.reset()


class Consumers(WorkerProcesses):
    """`processes` × `pgq run <factory>`, watched and stopped as our runworkers are (SIGTERM is
    pgqueuer's own shutdown too)."""

    program = "pgq run"

    def __init__(self, *, pgq: str, factory: str, **kwargs):
        super().__init__(**kwargs)
        self.pgq = pgq
        self.factory = factory

    def command(self) -> list[str]:
        return [self.pgq, "run", self.factory]

    def layout(self) -> str:
        return f"{self.count}p"


class PickupConsumer:
    """LATENCY on pgqueuer's side: jobs enqueued 20 ms apart by the peer's client, whose
    `time.time()` after each enqueue returned is the start; the handler's first `time.time()`,
    read back from the file, the end."""

    def __init__(self, peer: PgQueuerPeer, pool: Consumers, path: Path):
        self.peer = peer
        self.pool = pool
        self.path = path

    def latencies(self, count: int, gap: float, timeout: float = PICKUP_TIMEOUT) -> list[float]:
        """Pickup latencies in ms, one per job."""
        answer = self.peer.client("latency", "--count", str(count), "--gap", repr(gap))
        committed = {int(job_id): at for job_id, at in answer["committed"]}
        started = self.wait_pickups(set(committed), timeout)
        return [(started[job_id] - at) * 1000 for job_id, at in committed.items()]

    def wait_pickups(self, ids: set[int], timeout: float) -> dict[int, float]:
        deadline = time.monotonic() + timeout
        while True:
            started = {}
            for line in self.path.read_text().splitlines(keepends=True):
                if line.endswith("\n"):  # a line being written is read next time
                    job_id, at = line.split()
                    if int(job_id) in ids:
                        started[int(job_id)] = float(at)
            if len(started) >= len(ids):
                return started
            self.pool.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"pgqueuer: only {len(started)} of {len(ids)} jobs picked up within {timeout}s")
            time.sleep(POLL_INTERVAL)
