"""The hot statements stay on their indexes as history grows (EXPLAIN on a filled table)."""

import pytest
from django.db import connection

from tasks.sql import QUERIES

pytestmark = pytest.mark.django_db


@pytest.fixture
def big_table():
    """60,000 finished tasks, 8,000 blocked behind a dependency, 100 ready, 50 failed with a retry due."""
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
        cursor.execute("ANALYZE tasks")


def plan(name: str, params: dict) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + QUERIES[name], params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_claim_reads_only_the_ready_index(big_table):
    text = plan("claim", {"types": ["test.record"], "limit": 8})
    assert "tasks_ready_idx" in text, text
    assert "Seq Scan on tasks" not in text, text


def test_retry_failed_reads_only_the_retry_index(big_table):
    text = plan("retry_failed", {})
    assert "tasks_retry_due_idx" in text, text
    assert "Seq Scan on tasks" not in text, text


def test_release_dependents_uses_the_dependency_index(big_table):
    text = plan(
        "release_dependents",
        {"ids": ["00000000-0000-0000-0000-000000000001"], "tokens": ["00000000-0000-0000-0000-000000000002"]},
    )
    assert "Seq Scan on tasks" not in text, text


def test_prepared_statements_are_planned_for_their_arguments():
    """A generic plan made on an empty table scans tasks_multi_idx by status per batch."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW plan_cache_mode")
        assert cursor.fetchone()[0] == "force_custom_plan"
