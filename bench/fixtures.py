"""The contents of the bench database: empty tables, queued tasks, a long history, blocked tasks.

Tasks are queued through `tasks.client`, as an application would; only the history of a
million finished tasks is inserted in SQL, since going through the queue would take hours.
"""

from django.db import connection

from tasks import client

NOOP = "diagnostics.noop"

# Finished tasks as a long-running deployment accumulates them (shape of scripts/explain_queries.py).
HISTORY = """
INSERT INTO tasks (id, type, payload, status, queued_at, started_at, finished_at, token, retries,
                   priority, cancel_attempted, dependencies_left, org_id)
SELECT gen_random_uuid(), 'diagnostics.noop', jsonb_build_object('n', n), 'completed',
       at - interval '2 seconds', at - interval '1 second', at, gen_random_uuid(), 0,
       0, false, 0, 'org-' || (n %% 100)
FROM (SELECT n, now() - interval '1 hour' - (%(rows)s - n) * interval '1 second' AS at
      FROM generate_series(1, %(rows)s) AS n) AS history
"""


def reset() -> None:
    """Empty every table the bench writes to. CASCADE: the domain's tables refer to `tasks`
    (a repository's last task); in the bench's database they are empty."""
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE tasks, task_heartbeats, task_dependencies, bench_pickups CASCADE")


def analyze() -> None:
    """Fresh statistics, as autovacuum would have them on a table in steady use."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE tasks")


def queue_noops(count: int, tag: str = "drain") -> list:
    """Queue `count` ready noop tasks in one call; return their ids."""
    return client.enqueue_many(NOOP, [{"bench": tag, "n": n} for n in range(count)])


def fill_history(rows: int) -> None:
    """Insert `rows` completed tasks, then VACUUM ANALYZE as autovacuum would in time."""
    with connection.cursor() as cursor:
        cursor.execute(HISTORY, {"rows": rows})
        cursor.execute("VACUUM ANALYZE tasks")


def queue_blocked(count: int) -> tuple:
    """Queue `count` noop tasks behind one dependency that never finishes during the bench.

    The dependency is a `diagnostics.sleep` task, a type the bench's pools do not serve
    (they run with --types diagnostics.noop), so it stays pending and so do its dependents.
    """
    blocker = client.enqueue("diagnostics.sleep", {"seconds": 0})
    blocked = client.enqueue_many(NOOP, [{"bench": "blocked", "n": n} for n in range(count)], dependencies=[blocker])
    return blocker, blocked


def ready_count(at_most: int | None = None) -> int:
    """Ready tasks (of any type), counted on the claim's own partial index; with `at_most`,
    the scan stops there, so that polling costs next to nothing while a pool drains."""
    with connection.cursor() as cursor:
        if at_most is None:
            cursor.execute("SELECT count(*) FROM tasks WHERE status = 'pending' AND dependencies_left = 0")
        else:
            cursor.execute(
                # In the claim's order, so that the plan is a scan of its index from the head.
                "SELECT count(*) FROM (SELECT FROM tasks WHERE status = 'pending' AND dependencies_left = 0 "
                "ORDER BY priority DESC, queued_at, id LIMIT %s) AS ready",
                [at_most],
            )
        return cursor.fetchone()[0]


def outcome(ids: list) -> dict:
    """Where the given tasks stand: how many completed or are still to run, and when the
    first one started and the last one finished (the database's clock)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*) FILTER (WHERE status = 'completed'),
                   count(*) FILTER (WHERE status IN ('pending', 'running')),
                   min(started_at), max(finished_at)
            FROM tasks WHERE id = ANY(%s)
            """,
            [list(ids)],
        )
        completed, left, first_start, last_finish = cursor.fetchone()
    return {"completed": completed, "left": left, "first_start": first_start, "last_finish": last_finish}
