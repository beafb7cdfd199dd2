"""Print EXPLAIN (ANALYZE, BUFFERS) of the queue's hot statements on a table with a long history.

Usage: DATABASE_URL=... .venv/bin/python scripts/explain_queries.py [FINISHED_ROWS]

Everything happens in one transaction that is rolled back: the database is left as it was.
"""

import os
import sys
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contentsources.settings")
django.setup()

# Imported after django.setup(), which the project's modules need (E402).
from django.db import connection, transaction  # noqa: E402

from tasks import maintenance, queue  # noqa: E402
from tasks.sql import QUERIES  # noqa: E402

FILL = """
INSERT INTO tasks (id, type, status, queued_at, started_at, finished_at, token, retries,
                   priority, cancel_attempted, dependencies_left, next_retry_time)
SELECT gen_random_uuid(), 'diagnostics.noop', s.status, now() - interval '1 day',
       CASE WHEN s.status IN ('completed', 'failed') THEN now() - interval '1 day' END,
       CASE WHEN s.status IN ('completed', 'failed') THEN now() END,
       CASE WHEN s.status IN ('completed', 'failed') THEN gen_random_uuid() END,
       0, 0, false, s.blocked, s.retry
FROM (SELECT 'completed' AS status, 0 AS blocked, NULL::timestamptz AS retry FROM generate_series(1, %(finished)s)
      UNION ALL SELECT 'pending', 1, NULL FROM generate_series(1, 8000)
      UNION ALL SELECT 'pending', 0, NULL FROM generate_series(1, 20000)
      UNION ALL SELECT 'failed', 0, now() + interval '1 hour' FROM generate_series(1, 1000)) s;
-- A backlog of another type, which a claim of diagnostics.noop must not read.
INSERT INTO tasks (id, type, status, queued_at, retries, priority, cancel_attempted, dependencies_left)
SELECT gen_random_uuid(), 'diagnostics.sleep', 'pending', now() - interval '2 days', 0, 0, false, 0
FROM generate_series(1, 100000)
"""


# The finished history made old enough for the cleanup (30 days and more, one enqueued every
# millisecond), 1,000 of its tasks with a pending dependent each (which the cleanup keeps).
AGE = """
UPDATE tasks
SET queued_at = now() - interval '30 days' - seq * interval '1 ms',
    started_at = now() - interval '30 days' - seq * interval '1 ms',
    finished_at = now() - interval '30 days' - seq * interval '1 ms' + interval '1 s'
WHERE status = 'completed';
INSERT INTO task_dependencies (task_id, dependency_id)
SELECT blocked.id, parent.id
FROM (SELECT id, row_number() OVER () AS n
      FROM tasks WHERE status = 'pending' AND dependencies_left = 1 LIMIT 1000) blocked
JOIN (SELECT id, row_number() OVER () AS n FROM tasks WHERE status = 'completed' LIMIT 1000) parent USING (n)
"""


class Rollback(Exception):
    pass


def running(cursor) -> dict:
    """The runs the explained claim started (lock_ends, then complete_ends, record their ends)."""
    cursor.execute("SELECT id, token FROM tasks WHERE status = 'running' ORDER BY started_at, id")
    rows = cursor.fetchall()
    return {"ids": [row[0] for row in rows], "tokens": [row[1] for row in rows], "worker": "explain:1"}


def main(finished: int) -> None:
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(FILL, {"finished": finished})
            cursor.execute("ANALYZE tasks")
            statements = [
                ("claim", lambda: {"types": ["diagnostics.noop"], "limit": 8, "window": 32, "worker": "explain:1"}),
                ("refresh_heartbeats", lambda: running(cursor)),
                ("lock_ends", lambda: running(cursor)),
                ("complete_ends", lambda: running(cursor)),
                ("retry_failed", lambda: {}),
                ("stale_heartbeats", lambda: {"timeout": 60}),
                ("take_stats", lambda: {}),  # the janitor's, for the metrics: one pool at a time
            ]
            print(
                f"tasks: {finished} finished, 8000 blocked, 20000 ready of the claimed type and 100000 of"
                " another, 1000 failed waiting for a retry\n"
            )
            for name, params in statements:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + QUERIES[name], params())
                print(f"-- {name}")
                print("\n".join(row[0] for row in cursor.fetchall()), end="\n\n")
            explain_cleanup(cursor, finished)
            cursor.execute("SELECT version()")
            print(cursor.fetchone()[0])
            raise Rollback
    except Rollback:
        pass


def explain_cleanup(cursor, finished: int) -> None:
    """The statements of a cleanup batch, on its first window: read, lock, delete."""
    cursor.execute(AGE)
    cursor.execute("ANALYZE tasks")
    cursor.execute("ANALYZE task_dependencies")
    print(f"-- cleanup: the {finished} completed tasks 30 days old, 1000 of them with a pending dependent\n")
    ages, default = maintenance.cleanup_ages()
    window = queue.cleanup_window(queue.CLEANUP_START, maintenance.CLEANUP_BATCH, ages, default)
    due = [row for row in window if row["due"]]
    params = queue.cleanup_window_params(queue.CLEANUP_START, maintenance.CLEANUP_BATCH, ages, default)
    lock = {
        "ids": [row["id"] for row in due],
        "statuses": [row["status"] for row in due],
        "finished": [row["finished_at"] for row in due],
    }
    for name, statement_params in [
        ("cleanup_window", params),
        ("cleanup_lock", lock),
        ("cleanup_delete", {"ids": lock["ids"]}),
    ]:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + QUERIES[name], statement_params)
        print(f"-- {name}")
        print("\n".join(row[0] for row in cursor.fetchall()), end="\n\n")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
