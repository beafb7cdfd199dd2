"""The hot statements stay on their indexes as history grows (EXPLAIN on a filled table)."""

import json

import pytest
from django.db import connection, transaction

from tasks.sql import QUERIES

pytestmark = pytest.mark.django_db


@pytest.fixture
def big_table():
    """60,000 finished tasks, 8,000 blocked behind one of 100 ready ones, 50 failed with a retry due."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO tasks (id, type, status, queued_at, started_at, finished_at, token, retries,
                               priority, cancel_attempted, dependencies_left, next_retry_time)
            SELECT gen_random_uuid(), 'test.record', s.status, now() - interval '1 day',
                   CASE WHEN s.status IN ('completed', 'failed') THEN now() - interval '1 day' END,
                   CASE WHEN s.status IN ('completed', 'failed') THEN now() END,
                   CASE WHEN s.status IN ('completed', 'failed') THEN gen_random_uuid() END,
                   0, 0, false, s.blocked, s.retry
            FROM (
                SELECT 'completed' AS status, 0 AS blocked, NULL::timestamptz AS retry FROM generate_series(1, 60000)
                UNION ALL SELECT 'pending', 1, NULL FROM generate_series(1, 8000)
                UNION ALL SELECT 'pending', 0, NULL FROM generate_series(1, 100)
                UNION ALL SELECT 'failed', 0, now() FROM generate_series(1, 50)
            ) s
            """
        )
        # Each blocked task waits on one of the ready ones: a real edge table, so that the
        # planner is not right to read task_dependencies in full (as it is when it is empty).
        cursor.execute(
            """
            INSERT INTO task_dependencies (task_id, dependency_id)
            SELECT blocked.id, ready.id
            FROM (SELECT id, row_number() OVER () % 100 AS n FROM tasks WHERE dependencies_left = 1) blocked
            JOIN (SELECT id, row_number() OVER () % 100 AS n
                  FROM tasks WHERE status = 'pending' AND dependencies_left = 0) ready USING (n)
            """
        )
        cursor.execute("ANALYZE tasks, task_dependencies")


def plan(name: str, params: dict) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + QUERIES[name], params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_claim_reads_only_the_ready_index(big_table):
    text = plan("claim", {"types": ["test.record"], "limit": 8, "window": 32, "worker": None})
    assert "tasks_ready_idx" in text, text
    assert "Seq Scan on tasks" not in text, text


def test_retry_failed_reads_only_the_retry_index(big_table):
    text = plan("retry_failed", {})
    assert "tasks_retry_due_idx" in text, text
    assert "Seq Scan on tasks" not in text, text


@pytest.mark.parametrize("name", ["lock_ends", "complete_ends", "refresh_heartbeats"])
def test_recording_ends_and_beating_read_by_key(big_table, name):
    ids = {
        "ids": ["00000000-0000-0000-0000-000000000001"],
        "tokens": ["00000000-0000-0000-0000-000000000002"],
        "worker": None,
    }
    text = plan(name, ids)
    assert "Seq Scan on tasks" not in text, text
    assert "Seq Scan on task_dependencies" not in text, text


def insert_ready(type_: str, count: int, *, analyze: bool = True) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tasks (id, type, status, queued_at, retries, priority, cancel_attempted, dependencies_left)"
            " SELECT gen_random_uuid(), %s, 'pending', now(), 0, 0, false, 0 FROM generate_series(1, %s)",
            [type_, count],
        )
        if analyze:
            cursor.execute("ANALYZE tasks")


def claim_cost(types: list[str]) -> tuple[int, str]:
    """Buffers a claim of 8 touches, and its plan (run, then rolled back)."""
    with transaction.atomic(), connection.cursor() as cursor:
        params = {"types": types, "limit": 8, "window": 32, "worker": None}
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + QUERIES["claim"], params)
        [explained] = cursor.fetchone()[0]
        transaction.set_rollback(True)
    top = explained["Plan"]
    return top["Shared Hit Blocks"] + top["Shared Read Blocks"], json.dumps(explained)


@pytest.mark.parametrize("served", [["test.record"], ["test.record", "test.gate"]])
def test_a_typed_claim_costs_the_same_whatever_the_backlog_of_other_types(served):
    """Measured before the fix: 1,939 buffers and 18.7 ms per claim behind 100,000 ready
    tasks of another type, against about 0.6 ms without them."""
    insert_ready("test.record", 100)
    insert_ready("test.gate", 100)
    alone, _ = claim_cost(served)
    insert_ready("test.flaky", 100_000)
    behind_a_backlog, explained = claim_cost(served)
    assert "tasks_ready_idx" in explained and "Seq Scan" not in explained, explained
    assert behind_a_backlog <= alone + 10, (alone, behind_a_backlog)


def test_a_claim_keeps_its_plan_when_the_statistics_predate_a_burst():
    """Statistics taken while no task was pending, then 20,000 ready tasks: before the fix the
    claim found them through tasks_status_queued_idx and compared each with every head
    (80 ms a claim, a drain of no-ops at a tenth of its speed until autovacuum's ANALYZE)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tasks (id, type, status, queued_at, started_at, finished_at, token, retries, priority,"
            " cancel_attempted, dependencies_left) SELECT gen_random_uuid(), 'test.record', 'completed', now(),"
            " now(), now(), gen_random_uuid(), 0, 0, false, 0 FROM generate_series(1, 1000)"
        )
        cursor.execute("ANALYZE tasks")
    insert_ready("test.record", 20_000, analyze=False)
    buffers, explained = claim_cost(["test.record"])
    scans = set()

    def walk(node: dict) -> None:
        if "Index Name" in node:
            scans.add((node["Node Type"], node["Index Name"]))
        elif "Scan" in node["Node Type"] and node.get("Relation Name") == "tasks":
            scans.add((node["Node Type"], "tasks"))
        for child in node.get("Plans", []):
            walk(child)

    walk(json.loads(explained)["Plan"])
    used = {index for _, index in scans}
    assert used <= {"tasks_ready_idx", "tasks_pkey", "task_heartbeats_pkey"}, scans
    assert "tasks_ready_idx" in used and "tasks_pkey" in used, scans
    assert buffers < 2_000, buffers


def test_prepared_statements_are_planned_for_their_arguments():
    """A generic plan made on an empty table scans tasks_multi_idx by status per batch."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW plan_cache_mode")
        assert cursor.fetchone()[0] == "force_custom_plan"


def test_a_cleanup_window_reads_the_old_end_of_the_queued_index(big_table):
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tasks (id, type, status, queued_at, started_at, finished_at, token, retries, priority,"
            " cancel_attempted, dependencies_left)"
            " SELECT gen_random_uuid(), 'test.record', 'completed', now() - interval '30 days',"
            " now() - interval '30 days', now() - interval '30 days', gen_random_uuid(), 0, 0, false, 0"
            " FROM generate_series(1, 20000)"
        )
        # The blocked tasks' edges: on an empty task_dependencies a sequential scan is the
        # right plan, and the guards below would be judged on nothing.
        cursor.execute(
            "INSERT INTO task_dependencies (task_id, dependency_id)"
            " SELECT b.id, c.id FROM"
            " (SELECT id, row_number() OVER () AS n FROM tasks WHERE status = 'pending' AND dependencies_left = 1) b"
            " JOIN (SELECT id, row_number() OVER () AS n FROM tasks WHERE status = 'completed') c USING (n)"
        )
        cursor.execute("ANALYZE tasks")
        cursor.execute("ANALYZE task_dependencies")
    day = 86400.0
    params = {
        "types": ["test.record"],
        "completed": [10 * day],
        "failed": [None],
        "canceled": [20 * day],
        "default_completed": 20 * day,
        "default_failed": 20 * day,
        "default_canceled": 20 * day,
        "shortest": 10 * day,
        "after_queued_at": "-infinity",
        "after_id": "00000000-0000-0000-0000-000000000000",
        "limit": 500,
    }
    text = plan("cleanup_window", params)
    # PostgreSQL 18 (the embedded server) may skip-scan tasks_type_queued_idx instead, then sort
    # the old rows: an index either way, never the whole table.
    assert "tasks_queued_idx" in text or "tasks_type_queued_idx" in text, text
    assert "Seq Scan on tasks" not in text, text
    ids = {"ids": ["00000000-0000-0000-0000-000000000001"]}
    for name, statement_params in [
        ("cleanup_lock", {**ids, "statuses": ["completed"], "finished": [None]}),
        ("cleanup_delete", ids),
    ]:
        text = plan(name, statement_params)
        assert "Seq Scan on tasks" not in text, text
        assert "Seq Scan on task_dependencies" not in text, text
