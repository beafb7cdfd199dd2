"""The Postgres queue: the only code that changes the state of tasks.

Each operation is atomic: one statement, or one transaction on the calling thread's Django
connection (a savepoint inside the caller's), so that an enqueue made inside the caller's
transaction commits (and wakes the workers) together with the caller's own writes. The SQL
is in sql/queries.sql.
"""

import json
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import psycopg
from django.db import connection, transaction
from psycopg.rows import DictRow, dict_row

from tasks.conf import ERROR_LIMIT, MAX_RETRIES, tasking
from tasks.exceptions import DependencyNotFound, TaskNotFound
from tasks.models import Task
from tasks.sql import QUERIES

MAX_RETRIES_ERROR = "task has exceeded the maximum amount of retries"
PARENT_FAILED = "parent task failed"
PARENT_CANCELED = "parent task canceled"

Params = Mapping[str, Any]


@dataclass(frozen=True)
class Run:
    """A claimed task and the token of this run of it."""

    task: Task
    token: uuid.UUID


@contextmanager
def _raw_connection() -> Iterator[psycopg.Connection[Any]]:
    """This thread's Django connection as psycopg's (and so in its transaction), with
    Django's errors: the queue binds parameters on the server, so that each statement is
    prepared once per connection instead of planned at every call, and pipelines its steps."""
    connection.ensure_connection()
    connection.validate_no_broken_transaction()
    with connection.wrap_database_errors:
        yield connection.connection


Cursor = psycopg.Cursor[DictRow]


@contextmanager
def _cursor() -> Iterator[Cursor]:
    """A cursor whose rows are read by column name."""
    with _raw_connection() as conn, psycopg.Cursor(conn, row_factory=dict_row) as cursor:
        yield cursor


def _execute(cursor: Cursor, name: str, params: Params | None = None) -> list[DictRow]:
    cursor.execute(QUERIES[name], params, prepare=True)
    return cursor.fetchall() if cursor.description else []


def _send(conn: psycopg.Connection[Any], name: str, params: Params | None = None) -> Cursor:
    """Queue a statement in a pipeline; its rows are read (and the pipeline synced) later."""
    cursor = psycopg.Cursor(conn, row_factory=dict_row)
    cursor.execute(QUERIES[name], params, prepare=True)
    return cursor


def clean_error(text: str) -> str:
    """Make an error text storable: no NUL bytes, valid UTF-8, at most ERROR_LIMIT characters."""
    text = text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    return text[:ERROR_LIMIT]


def enqueue(
    *,
    type: str,
    payloads_json: Sequence[str],
    dependencies: Sequence[uuid.UUID] = (),
    priority: int = 0,
    org_id: str | None = None,
    account_id: str | None = None,
    object_uuid: uuid.UUID | None = None,
    object_type: str | None = None,
    request_id: str | None = None,
) -> tuple[list[uuid.UUID], str]:
    """Insert one task per payload, all with the same attributes and dependencies; return
    their ids and their status.

    A task whose dependency has already failed for good or been cancelled is stored
    canceled at once, never left to wait forever.
    """
    task_ids = [uuid.uuid4() for _ in payloads_json]
    dependency_ids = sorted(set(dependencies))
    status: str = Task.Status.PENDING
    insert: dict[str, Any] = {
        "ids": task_ids,
        "payloads": list(payloads_json),
        "type": type,
        "status": Task.Status.PENDING,
        "error": None,
        "org_id": org_id,
        "account_id": account_id,
        "object_uuid": object_uuid,
        "object_type": object_type,
        "request_id": request_id,
        "priority": priority,
        "dependencies_left": 0,
    }
    if not dependency_ids:
        # One statement, atomic by itself (or part of the caller's transaction).
        with _cursor() as cursor:
            _execute(cursor, "insert_tasks", insert)
        return task_ids, Task.Status.PENDING
    with transaction.atomic(), _cursor() as cursor:
        rows = _execute(cursor, "lock_dependencies", {"ids": dependency_ids})
        missing = set(dependency_ids) - {row["id"] for row in rows}
        if missing:
            raise DependencyNotFound(f"dependency does not exist: {', '.join(sorted(map(str, missing)))}")
        for row in rows:
            if row["status"] == Task.Status.CANCELED:
                status, insert["error"] = Task.Status.CANCELED, PARENT_CANCELED
            elif row["status"] == Task.Status.FAILED and row["next_retry_time"] is None:
                status, insert["error"] = Task.Status.CANCELED, PARENT_FAILED
        insert["status"] = status
        insert["dependencies_left"] = sum(1 for row in rows if row["status"] != Task.Status.COMPLETED)
        _execute(cursor, "insert_tasks", insert)
        _execute(cursor, "insert_dependencies", {"ids": task_ids, "dependency_ids": dependency_ids})
    return task_ids, status


class Ending(StrEnum):
    """How a run ended, as the worker saw it."""

    COMPLETED = "completed"
    FAILED = "failed"
    REQUEUE = "requeue"  # interrupted by a shutdown: back to pending, no retry used
    STOPPED = "stopped"  # canceled or lost: the run owns nothing, so nothing to write


@dataclass(frozen=True)
class Outcome:
    run: Run
    ending: Ending
    error: str | None = None
    requeueable: bool = False


@dataclass(frozen=True)
class Recorded:
    """What `finish_and_claim` did: the outcomes whose run still owned its task (with the
    retry time of a failure, None when final), and the newly claimed runs."""

    owned: dict[uuid.UUID, datetime | None]
    claimed: list[Run]


def finish_and_claim(outcomes: Sequence[Outcome], types: Sequence[str], limit: int) -> Recorded:
    """Record the ends of runs and claim up to `limit` new ones.

    A pool calls this from one thread, so that the ends of many runs and the next claims
    cost one round trip, not a few per task: the completions, the release of their
    dependents and the claim go to the server in one pipelined transaction. Failures and
    shutdown requeues, rarer and needing results to decide, each get a transaction first.
    """
    owned: dict[uuid.UUID, datetime | None] = {}
    for outcome in outcomes:
        if outcome.ending is Ending.FAILED:
            was_owned, retry_at = fail(outcome.run, outcome.error or "", requeueable=outcome.requeueable)
            if was_owned:
                owned[outcome.run.task.id] = retry_at
        elif outcome.ending is Ending.REQUEUE:
            if requeue(outcome.run.task.id, outcome.run.token, count_retry=False) is not None:
                owned[outcome.run.task.id] = None
    completed = [o.run for o in outcomes if o.ending is Ending.COMPLETED]
    if not completed and limit <= 0:
        return Recorded(owned=owned, claimed=[])
    with _raw_connection() as conn, conn.pipeline():
        done = claim = None
        with conn.transaction():
            if completed:
                params = {"ids": [run.task.id for run in completed], "tokens": [run.token for run in completed]}
                done = _send(conn, "complete", params)
                _send(conn, "release_dependents", params).close()
            if limit > 0:
                claim = _send(conn, "claim", {"types": list(types), "limit": limit})
        if done is not None:
            owned.update(dict.fromkeys(row["id"] for row in done.fetchall()))
            done.close()
        rows = claim.fetchall() if claim is not None else []
    runs = sorted(map(_run_from_row, rows), key=lambda run: (-run.task.priority, run.task.queued_at, run.task.id))
    return Recorded(owned=owned, claimed=runs)


def _run_from_row(row: DictRow) -> Run:
    payload = row.pop("payload")
    task = Task(status=Task.Status.RUNNING, payload=None if payload is None else json.loads(payload), **row)
    return Run(task=task, token=row["token"])


def claim(types: Sequence[str], limit: int) -> list[Run]:
    """Claim up to `limit` ready tasks of `types`, in pick order."""
    return finish_and_claim([], types, limit).claimed


def complete(run: Run) -> bool:
    """Finish a run as completed; False if the run no longer owned its task."""
    return run.task.id in finish_and_claim([Outcome(run, Ending.COMPLETED)], [], 0).owned


def fail(run: Run, error: str, *, requeueable: bool) -> tuple[bool, datetime | None]:
    """Finish a run as failed. Returns whether the run still owned its task, and the time of
    the automatic retry (None when the failure is final and its dependents are cancelled).
    """
    with transaction.atomic(), _cursor() as cursor:
        return _fail(cursor, run.task.id, run.token, error, requeueable=requeueable)


def _fail(
    cursor: Cursor, task_id: uuid.UUID, token: uuid.UUID, error: str, *, requeueable: bool
) -> tuple[bool, datetime | None]:
    rows = _execute(
        cursor,
        "fail",
        {
            "id": task_id,
            "token": token,
            "error": clean_error(error),
            "requeueable": requeueable,
            "max_retries": MAX_RETRIES,
            "upper_bound": tasking().retry_wait_upper_bound,
        },
    )
    if not rows:
        return False, None
    next_retry_time: datetime | None = rows[0]["next_retry_time"]
    if next_retry_time is None:
        _cancel_descendants(cursor, [task_id], PARENT_FAILED)
    return True, next_retry_time


def requeue(task_id: uuid.UUID, token: uuid.UUID, *, count_retry: bool) -> str | None:
    """Put a run's task back to pending.

    A requeue that counts (a dead worker) fails the task for good once it has had its
    retries; a shutdown requeue does not count. Returns the new status, or None if the run
    no longer owned its task.
    """
    with transaction.atomic(), _cursor() as cursor:
        return _requeue(cursor, task_id, token, count_retry=count_retry)


def _requeue(cursor: Cursor, task_id: uuid.UUID, token: uuid.UUID, *, count_retry: bool) -> str | None:
    params = {"id": task_id, "token": token, "count_retry": int(count_retry), "max_retries": MAX_RETRIES}
    if _execute(cursor, "requeue", params):
        return Task.Status.PENDING
    if count_retry and _fail(cursor, task_id, token, MAX_RETRIES_ERROR, requeueable=False)[0]:
        return Task.Status.FAILED
    return None


def cancel(task_id: uuid.UUID) -> str:
    """Cancel a task and every unfinished descendant; return the status it had before.

    A finished task keeps its status but gets cancel_attempted, which stops a pending retry.
    """
    with transaction.atomic(), _cursor() as cursor:
        rows = _execute(cursor, "cancel", {"id": task_id})
        if not rows:
            raise TaskNotFound(f"task does not exist: {task_id}")
        previous: str = rows[0]["status"]
        next_retry_time = rows[0]["next_retry_time"]
        if previous in (Task.Status.PENDING, Task.Status.RUNNING):
            _cancel_descendants(cursor, [task_id], PARENT_CANCELED)
            _execute(cursor, "drop_heartbeats", {"ids": [task_id]})
        elif previous == Task.Status.FAILED and next_retry_time is not None:
            # The retry it was waiting for will not come: its failure is final now.
            _cancel_descendants(cursor, [task_id], PARENT_FAILED)
    return previous


def _cancel_descendants(cursor: Cursor, task_ids: Iterable[uuid.UUID], reason: str) -> None:
    level, canceled = list(task_ids), []
    while level:
        level = [row["id"] for row in _execute(cursor, "cancel_dependents", {"ids": level, "reason": reason})]
        canceled += level
    if canceled:
        _execute(cursor, "drop_heartbeats", {"ids": canceled})


def refresh_heartbeats(tokens: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Beat for these runs; return the tokens whose run no longer owns its task."""
    with transaction.atomic(), _cursor() as cursor:
        alive = {row["token"] for row in _execute(cursor, "refresh_heartbeats", {"tokens": list(tokens)})}
    return set(tokens) - alive


def requeue_stale(timeout: float) -> list[tuple[uuid.UUID, str]]:
    """Requeue (or fail, past the retry cap) the tasks whose heartbeat is older than `timeout`.

    Returns (task id, new status) for each rescued task.
    """
    rescued = []
    with transaction.atomic(), _cursor() as cursor:
        for row in _execute(cursor, "stale_heartbeats", {"timeout": timeout}):
            status = _requeue(cursor, row["id"], row["token"], count_retry=True)
            if status is None:
                _execute(cursor, "delete_heartbeat", {"token": row["token"]})
            else:
                rescued.append((row["id"], status))
    return rescued


def retry_failed() -> list[uuid.UUID]:
    """Requeue the failed tasks whose retry time has come; return their ids."""
    with transaction.atomic(), _cursor() as cursor:
        return [row["id"] for row in _execute(cursor, "retry_failed")]


def update_payload(run: Run, payload_json: str) -> bool:
    """Save a run's payload; False if the run no longer owns its task."""
    with transaction.atomic(), _cursor() as cursor:
        return bool(
            _execute(cursor, "update_payload", {"id": run.task.id, "token": run.token, "payload": payload_json})
        )


def status(task_id: uuid.UUID) -> Task:
    """The task with this id, dependencies included."""
    try:
        return Task.objects.prefetch_related("dependencies").get(pk=task_id)
    except Task.DoesNotExist:
        raise TaskNotFound(f"task does not exist: {task_id}") from None
