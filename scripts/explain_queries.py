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


class Rollback(Exception):
    pass


def running(cursor) -> dict:
    """The runs the explained claim started (lock_ends, then complete_ends, record their ends)."""
    cursor.execute("SELECT id, token FROM tasks WHERE status = 'running' ORDER BY started_at, id")
    rows = cursor.fetchall()
    return {"ids": [row[0] for row in rows], "tokens": [row[1] for row in rows]}


def main(finished: int) -> None:
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(FILL, {"finished": finished})
            cursor.execute("ANALYZE tasks")
            statements = [
                ("claim", lambda: {"types": ["diagnostics.noop"], "limit": 8, "window": 32}),
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
            cursor.execute("SELECT version()")
            print(cursor.fetchone()[0])
            raise Rollback
    except Rollback:
        pass


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
