"""The Postgres queue: the only code that changes the state of tasks.

Each operation is atomic: one statement, or one transaction on the calling thread's Django
connection (a savepoint inside the caller's), so that an enqueue made inside the caller's
transaction commits (and wakes the workers) together with the caller's own writes. The SQL
is in sql/queries.sql, with the order in which it takes its locks.
"""

import json
import logging
import random
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import psycopg
from django.db import DatabaseError, IntegrityError, OperationalError, connection, transaction
from psycopg.rows import DictRow, dict_row

from tasks.conf import ERROR_LIMIT, MAX_RETRIES, tasking
from tasks.exceptions import DependencyNotFound, TaskAlreadyQueued, TaskBusy, TaskNotFound
from tasks.models import Task
from tasks.sql import QUERIES

MAX_RETRIES_ERROR = "task has exceeded the maximum amount of retries"
PARENT_FAILED = "parent task failed"
PARENT_CANCELED = "parent task canceled"
# The index by which an active task holds its unique key (tasks/models.py).
UNIQUE_KEY_INDEX = "tasks_unique_key_active"

Params = Mapping[str, Any]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Run:
    """A claimed task and the token of this run of it."""

    task: Task
    token: uuid.UUID


@contextmanager
def _raw_connection() -> Iterator[psycopg.Connection[Any]]:
    """This thread's Django connection as psycopg's (and so in its transaction), with
    Django's errors: the queue binds parameters on the server, so that each statement is
    prepared once per connection instead of planned at every call, and pipelines its steps.
    A connection whose `prepare_threshold` is None prepares nothing, even when asked
    (`TASKING_WAKEUPS=poll`, for PgBouncer's transaction mode: contentsources/settings.py)."""
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
    unique_key: str | None = None,
) -> tuple[list[uuid.UUID], str]:
    """Insert one task per payload, all with the same attributes and dependencies; return
    their ids and their status.

    A task whose dependency has already failed for good or been cancelled is stored
    canceled at once, never left to wait forever. A task whose unique key an active task
    holds is not stored: TaskAlreadyQueued names that task.
    """
    task_ids = [uuid.uuid4() for _ in payloads_json]
    dependency_ids = list(set(dependencies))
    status: str = Task.Status.PENDING
    insert: dict[str, Any] = {
        "ids": task_ids,
        "payloads": list(payloads_json),
        "type": type,
        "error": None,
        "org_id": org_id,
        "account_id": account_id,
        "object_uuid": object_uuid,
        "object_type": object_type,
        "request_id": request_id,
        "priority": priority,
        "dependencies_left": 0,
        "unique_key": unique_key,
    }
    # Without dependencies and outside a caller's transaction, the insert is one statement,
    # atomic by itself: no transaction of its own, so one round trip, not three. Inside a
    # caller's transaction it keeps its savepoint: a failed insert must not leave the
    # caller's transaction aborted behind Django's back (its COMMIT would roll back).
    atomic = dependency_ids or connection.in_atomic_block
    with transaction.atomic() if atomic else nullcontext(), _cursor() as cursor:
        if dependency_ids:
            rows = _execute(cursor, "lock_dependencies", {"ids": dependency_ids})
            missing = set(dependency_ids) - {row["id"] for row in rows}
            if missing:
                raise DependencyNotFound(f"dependency does not exist: {', '.join(sorted(map(str, missing)))}")
            for row in rows:
                if row["status"] == Task.Status.CANCELED:
                    status, insert["error"] = Task.Status.CANCELED, PARENT_CANCELED
                elif row["status"] == Task.Status.FAILED and row["next_retry_time"] is None:
                    status, insert["error"] = Task.Status.CANCELED, PARENT_FAILED
            insert["dependencies_left"] = sum(1 for row in rows if row["status"] != Task.Status.COMPLETED)
        insert["status"] = status
        if not _execute(cursor, "insert_tasks", insert):
            holder = _execute(cursor, "unique_key_holder", {"unique_key": unique_key})
            # The holder may have ended between the two statements; the caller can try again.
            holder_id = holder[0]["id"] if holder else None
            raise TaskAlreadyQueued(
                f"a pending or running task already holds the unique key {unique_key!r}: {holder_id}",
                task_id=holder_id,
            )
        if dependency_ids:
            _execute(cursor, "insert_dependencies", {"ids": task_ids, "dependency_ids": dependency_ids})
    return task_ids, status


class Ending(StrEnum):
    """How a run ended, as the worker saw it."""

    COMPLETED = "completed"
    FAILED = "failed"
    REQUEUE = "requeue"  # interrupted by a shutdown, or claimed ahead and not started: back to pending, no retry used
    STOPPED = "stopped"  # canceled or lost: the run owns nothing, so nothing to write but its heartbeat


@dataclass(frozen=True)
class Outcome:
    run: Run
    ending: Ending
    error: str | None = None
    requeueable: bool = False
    # How long the handler ran, in seconds; None when it did not run.
    duration: float | None = None


@dataclass(frozen=True)
class Recorded:
    """What `finish_and_claim` did with the outcomes it was given and what it claimed.

    `owned`: the outcomes recorded, with the retry time of a failure (None when final).
    `deferred`: those not recorded because another transaction holds their task's row (or a
    dependent's), or an error of their own: still owned, to be recorded again later. Any other
    outcome was lost: its run no longer owned its task (its heartbeat is dropped).
    `contended`: the claim found ready tasks it could not take because another transaction
    held them: there may be more to claim in a moment.
    """

    owned: dict[uuid.UUID, datetime | None]
    deferred: list[Outcome]
    claimed: list[Run]
    contended: bool = False


# How many heads of each served type a claim reads, per task it claims: enough that pools
# claiming at the same time find other tasks than the ones the others hold.
CLAIM_WINDOW = 4


def finish_and_claim(
    outcomes: Sequence[Outcome], types: Sequence[str], limit: int, *, worker: str | None = None
) -> Recorded:
    """Record the ends of runs and claim up to `limit` new ones; `worker` names the process
    that runs them on their heartbeat rows (`manage.py tasks stats` lists them by it).

    A pool calls this from one thread, so that the ends of many runs and the next claims
    cost one round trip, not a few per task: the completions, the release of their
    dependents, the heartbeats of stopped runs and the claim go to the server in one
    pipelined transaction. Failures and requeues, rarer and needing results to decide, each
    get a transaction first; a database error of one of them defers it without stopping the
    rest. Nothing here waits for a row another transaction holds.
    """
    owned: dict[uuid.UUID, datetime | None] = {}
    deferred: list[Outcome] = []
    lost: list[uuid.UUID] = []
    for outcome in outcomes:
        run = outcome.run
        if outcome.ending not in (Ending.FAILED, Ending.REQUEUE):
            continue
        try:
            if outcome.ending is Ending.FAILED:
                assert outcome.error is not None, "a failure carries its error"
                was_owned, retry_at = fail(run, outcome.error, requeueable=outcome.requeueable)
                if was_owned:
                    owned[run.task.id] = retry_at
            elif requeue(run.task.id, run.token, count_retry=False) is not None:
                owned[run.task.id] = None
        except TaskBusy:
            deferred.append(outcome)
            continue
        except DatabaseError as exc:
            logger.warning("recording the end of a run failed task_id=%s error=%r", run.task.id, exc)
            deferred.append(outcome)
            continue
        if run.task.id not in owned:
            lost.append(run.token)
    completed = [o for o in outcomes if o.ending is Ending.COMPLETED]
    stopped = [o.run.token for o in outcomes if o.ending is Ending.STOPPED] + lost
    if not completed and not stopped and limit <= 0:
        return Recorded(owned=owned, deferred=deferred, claimed=[])
    with _raw_connection() as conn, conn.pipeline():
        locks = ends = claim = None
        with conn.transaction():
            if completed:
                ends_params = {
                    "ids": [o.run.task.id for o in completed],
                    "tokens": [o.run.token for o in completed],
                    "worker": worker,
                }
                locks = _send(conn, "lock_ends", ends_params)
                ends = _send(conn, "complete_ends", ends_params)
            if stopped:
                _send(conn, "drop_heartbeats", {"tokens": stopped}).close()
            if limit > 0:
                params = {"types": list(types), "limit": limit, "window": CLAIM_WINDOW * limit, "worker": worker}
                claim = _send(conn, "claim", params)
        lost_completions = []
        if locks is not None and ends is not None:
            done = {row["id"]: row["completed"] for row in ends.fetchall()}
            still_owned = {row["id"] for row in locks.fetchall() if row["owned"]}
            locks.close()
            ends.close()
            for outcome in completed:
                if done.get(outcome.run.task.id):
                    owned[outcome.run.task.id] = None
                elif outcome.run.task.id in still_owned:
                    deferred.append(outcome)
                else:
                    lost_completions.append(outcome.run.token)
        rows = claim.fetchall() if claim is not None else []
    if lost_completions:  # a run canceled while its handler completed: its heartbeat goes too
        drop_heartbeats(lost_completions)
    candidates = rows[0]["candidates"] if rows else 0
    rows = [row for row in rows if row["id"] is not None]
    contended = len(rows) < limit and candidates > len(rows)
    runs = sorted(map(_run_from_row, rows), key=lambda run: (-run.task.priority, run.task.queued_at, run.task.id))
    return Recorded(owned=owned, deferred=deferred, claimed=runs, contended=contended)


def _run_from_row(row: DictRow) -> Run:
    payload = row.pop("payload")
    row.pop("candidates", None)
    task = Task(status=Task.Status.RUNNING, payload=None if payload is None else json.loads(payload), **row)
    return Run(task=task, token=row["token"])


def claim(types: Sequence[str], limit: int) -> list[Run]:
    """Claim up to `limit` ready tasks of `types`, in pick order."""
    return finish_and_claim([], types, limit).claimed


def complete(run: Run) -> bool:
    """Finish a run as completed; False if the run no longer owned its task, or if another
    transaction holds its task (or a dependent) and the end must be recorded later."""
    return run.task.id in finish_and_claim([Outcome(run, Ending.COMPLETED)], [], 0).owned


def fail(run: Run, error: str, *, requeueable: bool) -> tuple[bool, datetime | None]:
    """Finish a run as failed. Returns whether the run still owned its task, and the time of
    the automatic retry (None when the failure is final and its descendants are cancelled).

    Raises TaskBusy when another transaction holds the task or one of its descendants.
    """
    with transaction.atomic(), _cursor() as cursor:
        [lock] = _execute(cursor, "lock_ends", {"ids": [run.task.id], "tokens": [run.token]})
        if not lock["locked"]:
            if lock["owned"]:
                raise TaskBusy(f"task {run.task.id} is held by another transaction")
            return False, None
        return True, _fail(cursor, run.task.id, run.token, error, requeueable=requeueable)


def _fail(cursor: Cursor, task_id: uuid.UUID, token: uuid.UUID, error: str, *, requeueable: bool) -> datetime | None:
    """Fail a run whose task this transaction holds; cancel its descendants if final."""
    params = {
        "id": task_id,
        "token": token,
        "error": clean_error(error),
        "requeueable": requeueable,
        "max_retries": MAX_RETRIES,
        "upper_bound": tasking().retry_wait_upper_bound,
    }
    [row] = _execute(cursor, "fail", params)
    next_retry_time: datetime | None = row["next_retry_time"]
    if next_retry_time is None:
        _cancel_descendants(cursor, [task_id], PARENT_FAILED)
    return next_retry_time


def requeue(task_id: uuid.UUID, token: uuid.UUID, *, count_retry: bool) -> str | None:
    """Put a run's task back to pending.

    A requeue that counts (a dead worker) fails the task for good once it has had its
    retries; a shutdown requeue does not count. Returns the new status, or None if the run
    no longer owned its task. Raises TaskBusy when another transaction holds the task.
    """
    with transaction.atomic(), _cursor() as cursor:
        return _requeue(cursor, task_id, token, count_retry=count_retry)


def _requeue(cursor: Cursor, task_id: uuid.UUID, token: uuid.UUID, *, count_retry: bool) -> str | None:
    params = {"id": task_id, "token": token, "count_retry": int(count_retry), "max_retries": MAX_RETRIES}
    [row] = _execute(cursor, "requeue", params)
    if row["requeued"]:
        return Task.Status.PENDING
    if not row["owned"]:
        return None
    if count_retry and not row["under_cap"]:
        [lock] = _execute(cursor, "lock_ends", {"ids": [task_id], "tokens": [token]})
        if lock["locked"]:
            _fail(cursor, task_id, token, MAX_RETRIES_ERROR, requeueable=False)
            return Task.Status.FAILED
        if not lock["owned"]:
            return None
    raise TaskBusy(f"task {task_id} is held by another transaction")


# How long a cancel keeps trying while other transactions hold the task or its descendants,
# and its first and longest pause between tries.
CANCEL_PATIENCE = 10.0
CANCEL_PAUSE = (0.005, 0.25)


def cancel(task_id: uuid.UUID) -> str:
    """Cancel a task and every unfinished descendant; return the status it had before.

    A finished task keeps its status but gets cancel_attempted, which stops a pending retry.
    A cancel never waits for a lock while it holds one (so it can be in no deadlock): a row
    another transaction holds makes it roll back to its savepoint, pause and try again, for
    up to CANCEL_PATIENCE seconds, then raise TaskBusy.
    """
    deadline = time.monotonic() + CANCEL_PATIENCE
    pause = CANCEL_PAUSE[0]
    while True:
        try:
            with transaction.atomic(), _cursor() as cursor:
                return _cancel(cursor, task_id)
        except TaskBusy:
            if time.monotonic() + pause > deadline:
                raise
        time.sleep(random.uniform(pause / 2, pause))  # jittered, so that two cancels part
        pause = min(pause * 2, CANCEL_PAUSE[1])


def _cancel(cursor: Cursor, task_id: uuid.UUID) -> str:
    rows = _execute(cursor, "lock_task", {"id": task_id})
    if not rows:
        raise TaskNotFound(f"task does not exist: {task_id}")
    if not rows[0]["locked"]:
        raise TaskBusy(f"task {task_id} is held by another transaction")
    previous: str = rows[0]["status"]
    _execute(cursor, "cancel_task", {"id": task_id, "previous": previous})
    if previous in (Task.Status.PENDING, Task.Status.RUNNING):
        _cancel_descendants(cursor, [task_id], PARENT_CANCELED)
    elif previous == Task.Status.FAILED and rows[0]["next_retry_time"] is not None:
        # The retry it was waiting for will not come: its failure is final now.
        _cancel_descendants(cursor, [task_id], PARENT_FAILED)
    return previous


def _cancel_descendants(cursor: Cursor, task_ids: list[uuid.UUID], reason: str) -> None:
    """Cancel every unfinished descendant of tasks this transaction holds, locked in insertion
    order without waiting: TaskBusy if another transaction holds one. Each round looks again,
    with a new snapshot, for dependents linked before the round's locks."""
    done: set[uuid.UUID] = set()
    while True:
        found = [row["id"] for row in _execute(cursor, "unfinished_descendants", {"ids": task_ids})]
        found = [task_id for task_id in found if task_id not in done]
        if not found:
            return
        rows = _execute(cursor, "lock_unfinished_or_skip", {"ids": found})
        if not all(row["locked"] for row in rows):
            raise TaskBusy("a dependent task is held by another transaction")
        if rows:
            _execute(cursor, "cancel_locked", {"ids": [row["id"] for row in rows], "reason": reason})
        done.update(found)


def refresh_heartbeats(runs: Sequence[Run]) -> set[uuid.UUID]:
    """Beat for these runs; return the tokens whose run no longer owns its task."""
    params = {"ids": [run.task.id for run in runs], "tokens": [run.token for run in runs]}
    with transaction.atomic(), _cursor() as cursor:
        return {row["token"] for row in _execute(cursor, "refresh_heartbeats", params)}


def requeue_stale(timeout: float) -> list[tuple[uuid.UUID, str]]:
    """Record the ends handed over by stopping pools, then requeue (or fail, past the retry
    cap) the tasks whose heartbeat is older than `timeout`.

    Returns (task id, new status) for each task rescued or whose end was recorded.
    """
    rescued = []
    with transaction.atomic(), _cursor() as cursor:
        for row in _execute(cursor, "stale_heartbeats", {"timeout": timeout}):
            try:
                with transaction.atomic():
                    if row["ending"] is not None:
                        # Django's connection hands jsonb over as its text.
                        ending = json.loads(row["ending"])
                        status = _record_handed_over(cursor, row["id"], row["token"], ending)
                    else:
                        status = _requeue(cursor, row["id"], row["token"], count_retry=True)
            except TaskBusy:
                continue  # the task or a descendant is held: the next pass tries again
            if status is None:
                _execute(cursor, "delete_heartbeat", {"token": row["token"]})
            else:
                rescued.append((row["id"], status))
    return rescued


def _record_handed_over(cursor: Cursor, task_id: uuid.UUID, token: uuid.UUID, ending: dict[str, Any]) -> str | None:
    """Record an end that a stopping pool handed over (see hand_over_ends); TaskBusy, which
    rolls back to the caller's savepoint (heartbeat and hand-over kept), while it is held."""
    params = {"ids": [task_id], "tokens": [token], "worker": None}
    [lock] = _execute(cursor, "lock_ends", params)
    if not lock["locked"]:
        if lock["owned"]:
            raise TaskBusy(f"task {task_id} is held by another transaction")
        return None
    if ending["as"] == Ending.FAILED:
        requeueable = bool(ending.get("requeueable"))
        _fail(cursor, task_id, token, str(ending.get("error", "")), requeueable=requeueable)
        return Task.Status.FAILED
    [completed] = _execute(cursor, "complete_ends", params)
    if not completed["completed"]:
        raise TaskBusy(f"a dependent of task {task_id} is held by another transaction")
    return Task.Status.COMPLETED


def hand_over_ends(outcomes: Sequence[Outcome]) -> set[uuid.UUID]:
    """Leave ends that could not be recorded in their runs' heartbeat rows, for the next
    janitor pass of any pool to record (a stopping pool cannot wait for them). Returns the
    tokens handed over; a run without its heartbeat any more is lost and has no end to hand."""
    endings = [json.dumps({"as": o.ending.value, "error": o.error, "requeueable": o.requeueable}) for o in outcomes]
    params = {"tokens": [o.run.token for o in outcomes], "endings": endings}
    with transaction.atomic(), _cursor() as cursor:
        return {row["token"] for row in _execute(cursor, "hand_over_ends", params)}


def drop_heartbeats(tokens: Sequence[uuid.UUID]) -> None:
    """Drop the heartbeats of runs that stopped without an end to record."""
    with _cursor() as cursor:
        _execute(cursor, "drop_heartbeats", {"tokens": list(tokens)})


def retry_failed() -> list[uuid.UUID]:
    """Requeue the failed tasks whose retry time has come; return their ids."""
    with transaction.atomic(), _cursor() as cursor:
        return [row["id"] for row in _execute(cursor, "retry_failed")]


def requeue_failed(task_id: uuid.UUID) -> str:
    """Put a failed task back to pending now, its retries given back; return the status it had (a
    task that is not failed is left as it is).

    Raises TaskNotFound; TaskBusy when another transaction holds the task; TaskAlreadyQueued,
    naming the holder, when another active task holds its unique key (nothing is changed).
    """
    try:
        with transaction.atomic(), _cursor() as cursor:
            rows = _execute(cursor, "requeue_failed", {"id": task_id})
    except IntegrityError as exc:
        cause = exc.__cause__
        if not isinstance(cause, psycopg.errors.UniqueViolation) or cause.diag.constraint_name != UNIQUE_KEY_INDEX:
            raise
        unique_key = Task.objects.filter(pk=task_id).values_list("unique_key", flat=True).first()
        with _cursor() as cursor:
            holder = _execute(cursor, "unique_key_holder", {"unique_key": unique_key})
        # The holder may have ended since; the caller can try again.
        holder_id = holder[0]["id"] if holder else None
        raise TaskAlreadyQueued(
            f"another active task ({holder_id or 'ended since'}) holds its unique key {unique_key!r}",
            task_id=holder_id,
        ) from None
    if not rows:
        raise TaskNotFound(f"task does not exist: {task_id}")
    if not rows[0]["locked"]:
        raise TaskBusy(f"task {task_id} is held by another transaction")
    found: str = rows[0]["status"]
    return found


# How long a cleanup batch waits for a lock before it gives up (a row of another table that
# references a task it deletes, held by a transaction): under the server's deadlock_timeout
# (1 s by default), so that the batch, not the other transaction, is the one that gives up.
CLEANUP_LOCK_TIMEOUT = "200ms"
# The key (queued_at, id) before every task, where a cleanup pass begins.
CLEANUP_START = (datetime.min.replace(tzinfo=UTC), uuid.UUID(int=0))


# How long finished tasks are kept, in seconds, when completed, failed and canceled; None: for good.
Ages = tuple[float | None, float | None, float | None]


def cleanup_window(
    after: tuple[datetime, uuid.UUID], limit: int, ages: Mapping[str, Ages], default: Ages
) -> list[DictRow]:
    """The next `limit` tasks old enough for the cleanup to look at, after the key (queued_at,
    id) `after`, oldest first; each with `due`: whether the cleanup deletes it by the `ages` of
    its type (`default` for a type not in them). Locks nothing.

    Empty when no age deletes anything.
    """
    params = cleanup_window_params(after, limit, ages, default)
    if params is None:
        return []
    with _cursor() as cursor:
        return _execute(cursor, "cleanup_window", params)


def cleanup_window_params(
    after: tuple[datetime, uuid.UUID], limit: int, ages: Mapping[str, Ages], default: Ages
) -> dict[str, Any] | None:
    """The parameters of the statement `cleanup_window` (None when no age deletes anything)."""
    kept = [age for rule in (default, *ages.values()) for age in rule if age is not None]
    if not kept:
        return None
    return {
        "types": list(ages),
        "completed": [rule[0] for rule in ages.values()],
        "failed": [rule[1] for rule in ages.values()],
        "canceled": [rule[2] for rule in ages.values()],
        "default_completed": default[0],
        "default_failed": default[1],
        "default_canceled": default[2],
        "shortest": min(kept),
        "after_queued_at": after[0],
        "after_id": after[1],
        "limit": limit,
    }


def cleanup_delete(due: Sequence[DictRow]) -> dict[tuple[str, str], int] | None:
    """Delete the tasks cleanup_window found due, in one short transaction; return how many of
    each (type, status) went, or None when another cleanup holds the cleanup's lock.

    Never waits for a task row: one that another transaction holds is left for the next pass,
    as is one that changed since the window was read, or that a live task came to depend on.
    Raises TaskBusy when a row that references a task (another table's) stays held for longer
    than CLEANUP_LOCK_TIMEOUT.
    """
    try:
        with transaction.atomic(), _cursor() as cursor:
            [begun] = _execute(cursor, "cleanup_begin", {"lock_timeout": CLEANUP_LOCK_TIMEOUT})
            if not begun["locked"]:
                return None
            params = {
                "ids": [row["id"] for row in due],
                "statuses": [row["status"] for row in due],
                "finished": [row["finished_at"] for row in due],
            }
            locked = [row["id"] for row in _execute(cursor, "cleanup_lock", params)]
            if not locked:
                return {}
            rows = _execute(cursor, "cleanup_delete", {"ids": locked})
            return {(row["type"], row["status"]): row["deleted"] for row in rows}
    except OperationalError as exc:
        if isinstance(exc.__cause__, psycopg.errors.LockNotAvailable):
            raise TaskBusy("a row that references a task to delete is held by another transaction") from None
        raise


def orgs(limit: int) -> list[str]:
    """Up to `limit` organisations that have tasks, in order."""
    with _cursor() as cursor:
        return [row["org_id"] for row in _execute(cursor, "orgs", {"limit": limit})]


@dataclass(frozen=True)
class GroupStats:
    """The tasks of one status and type; for pending ones, how many are ready (no dependency
    left) and their waits in seconds since queued_at (None when none is ready)."""

    status: str
    type: str
    count: int
    ready: int | None
    wait_sum: float | None
    oldest_wait: float | None


@dataclass(frozen=True)
class TableStats:
    taken_at: datetime
    groups: list[GroupStats]


def refresh_stats(max_age: float) -> TableStats | None:
    """Take the table's statistics unless another session is taking them or the stored ones
    are younger than `max_age` seconds; return the stored ones (None before the first)."""
    with transaction.atomic(), _cursor() as cursor:
        [row] = _execute(cursor, "stats_due", {"max_age": max_age})
        if row["due"]:
            _execute(cursor, "take_stats")
    return stats()


def stats() -> TableStats | None:
    """The table's statistics as last taken, or None: one row read, however big the table."""
    with _cursor() as cursor:
        rows = _execute(cursor, "stats")
    if not rows:
        return None
    groups = [GroupStats(**group) for group in json.loads(rows[0]["stats"])]
    return TableStats(taken_at=rows[0]["taken_at"], groups=groups)


def update_payload(run: Run, payload_json: str) -> bool:
    """Save a run's payload; False if the run no longer owns its task."""
    params = {"id": run.task.id, "token": run.token, "payload": payload_json}
    with transaction.atomic(), _cursor() as cursor:
        return bool(_execute(cursor, "update_payload", params))


def status(task_id: uuid.UUID) -> Task:
    """The task with this id, dependencies included."""
    try:
        return Task.objects.prefetch_related("dependencies").get(pk=task_id)
    except Task.DoesNotExist:
        raise TaskNotFound(f"task does not exist: {task_id}") from None
