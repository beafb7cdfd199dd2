"""EXPLAIN (ANALYZE, BUFFERS) of the statements a drained or enqueued task goes through.

Usage: DATABASE_URL=... .venv/bin/python bench/explain_hot.py [FINISHED_ROWS]

scripts/explain_queries.py covers the pool's statements on a history; this explains the per-task
path of a drained or enqueued task (insert_tasks, claim, lock_ends, complete_ends), on
a table with a history, 8,000 blocked and 20,000 ready tasks, in a database of its own
(`bench_explain`, dropped at the end). The statements are those of the checkout this file is
in (tasks/sql/queries.sql), whatever their parameters: each `%(name)s` gets a value by name.
Everything runs in one transaction that is rolled back.
"""

import argparse
import re
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Imported once the checkout is on sys.path: the script runs from anywhere (E402).
from bench.database import BenchDatabase, Server  # noqa: E402
from bench.run import close_django, setup_django, subprocess_env  # noqa: E402

PLACEHOLDER = re.compile(r"%\((\w+)\)s")
STATEMENTS = ["insert_tasks", "claim", "lock_ends", "complete_ends"]


class Rollback(Exception):
    pass


def params_for(query: str, run_id: uuid.UUID, token: uuid.UUID) -> dict:
    """A value for every named parameter of a statement, by its name."""
    known = {
        "ids": [run_id],
        "id": run_id,
        "tokens": [token],
        "token": token,
        "types": ["diagnostics.noop"],
        "type": "diagnostics.noop",
        "limit": 8,
        "window": 32,
        "worker": "explain:1",
        "payloads": ['{"bench": "explain"}'],
        "status": "pending",
        "error": None,
        "org_id": "org-1",
        "account_id": None,
        "object_uuid": None,
        "object_type": None,
        "request_id": None,
        "priority": 0,
        "dependencies_left": 0,
        "unique_key": None,
        "timeout": 60,
    }
    names = set(PLACEHOLDER.findall(query))
    missing = names - set(known)
    if missing:
        raise KeyError(f"no value for parameters {sorted(missing)}")
    params = {name: known[name] for name in names}
    if "ids" in params and "payloads" in params:  # insert_tasks: a new task's id
        params["ids"] = [uuid.uuid4()]
    return params


def explain(rows: int) -> str:
    from django.db import connection, transaction

    from bench import fixtures
    from tasks.sql import QUERIES

    out = []
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(fixtures.HISTORY, {"rows": rows})
            fixtures.queue_blocked(8000)
            fixtures.queue_noops(20_000, tag="explain")
            cursor.execute("ANALYZE tasks")
            cursor.execute(QUERIES["claim"], params_for(QUERIES["claim"], uuid.uuid4(), uuid.uuid4()))
            cursor.execute("SELECT id, token FROM tasks WHERE status = 'running' LIMIT 1")
            run_id, token = cursor.fetchone()
            out.append(f"tasks: {rows:,} finished, 8,000 blocked, ~20,000 ready, 8 running\n")
            for name in STATEMENTS:
                query = QUERIES[name]
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + query, params_for(query, run_id, token))
                out.append(f"-- {name}\n" + "\n".join(row[0] for row in cursor.fetchall()) + "\n")
            cursor.execute("SELECT version()")
            out.append(cursor.fetchone()[0])
            raise Rollback
    except Rollback:
        pass
    return "\n".join(out)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="?", type=int, default=1_000_000, help="finished tasks in the table")
    rows = parser.parse_args(argv).rows
    server = Server.from_environment(ROOT)
    database = BenchDatabase(server, "bench_explain")
    env = subprocess_env(database)
    database.create()
    try:
        database.migrate(ROOT, env)
        setup_django(env, Path(tempfile.gettempdir()) / "bench-explain.log")
        print(explain(rows))
    finally:
        close_django()
        database.drop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
