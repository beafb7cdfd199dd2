"""The queue's state transitions, one statement at a time, on a real PostgreSQL."""

import datetime
import threading
import time
import uuid

import pytest
from django.db import DatabaseError, connection, transaction

from tasks import client, queue
from tasks.exceptions import DependencyNotFound, TaskAlreadyQueued, TaskNotFound
from tasks.listener import listen_connection
from tasks.models import Heartbeat, Task
from tasks.sql import QUERIES, load_queries
from tests.factories import HeartbeatFactory, TaskFactory

pytestmark = pytest.mark.django_db


def enqueue(type_="test.record", **kwargs):
    return client.enqueue(type_, kwargs.pop("payload", {}), **kwargs)


def claim_one(type_="test.record") -> queue.Run:
    runs = queue.claim([type_], 1)
    assert len(runs) == 1, "expected a ready task"
    return runs[0]


def get(task_id) -> Task:
    return Task.objects.get(pk=task_id)


def waits_for_a_lock(backend_pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", [backend_pid])
        return bool(cursor.fetchone()[0])


def db_now():
    with connection.cursor() as cursor:
        cursor.execute("SELECT clock_timestamp()")
        return cursor.fetchone()[0]


# --- enqueue -----------------------------------------------------------------------------


def test_enqueue_stores_a_pending_task_with_its_fields():
    object_uuid = uuid.uuid4()
    task_id = enqueue(
        payload={"url": "http://example.test/repo/"},
        priority=1,
        org_id="42",
        account_id="acct",
        object_uuid=object_uuid,
        object_type="repository",
        request_id="req-1",
    )
    task = get(task_id)
    assert task.status == Task.Status.PENDING
    assert task.payload == {"url": "http://example.test/repo/"}
    assert (task.priority, task.org_id, task.account_id) == (1, "42", "acct")
    assert (task.object_uuid, task.object_type, task.request_id) == (object_uuid, "repository", "req-1")
    assert task.started_at is None and task.token is None and task.retries == 0


def test_enqueue_joins_the_callers_transaction():
    with pytest.raises(RuntimeError), transaction.atomic():
        task_id = enqueue()
        assert Task.objects.filter(pk=task_id).exists()
        raise RuntimeError("the business write failed")
    assert not Task.objects.filter(pk=task_id).exists()


def test_enqueue_with_an_unknown_dependency_writes_nothing():
    parent = enqueue()
    missing = uuid.uuid4()
    with pytest.raises(DependencyNotFound, match=str(missing)):
        enqueue(dependencies=[parent, missing])
    assert list(Task.objects.values_list("id", flat=True)) == [parent]


def test_a_dependent_waits_until_its_parent_completes():
    parent = enqueue(payload={"n": "parent"})
    child = enqueue(payload={"n": "child"}, dependencies=[parent])
    assert get(child).dependencies_left == 1
    run = claim_one()
    assert run.task.id == parent
    assert queue.claim(["test.record"], 5) == []  # the child is blocked
    assert queue.complete(run)
    assert get(child).dependencies_left == 0
    assert claim_one().task.id == child


def test_a_dependency_that_already_completed_does_not_block():
    parent = enqueue()
    assert queue.complete(claim_one())
    child = enqueue(dependencies=[parent])
    assert get(child).dependencies_left == 0
    assert claim_one().task.id == child


@pytest.mark.parametrize(
    ("parent_state", "reason"),
    [("failed", queue.PARENT_FAILED), ("canceled", queue.PARENT_CANCELED)],
)
def test_a_task_whose_dependency_already_ended_badly_is_canceled_at_once(parent_state, reason):
    """The original left such a child runnable (failed parent) or pending forever (canceled)."""
    parent = TaskFactory(failed=True) if parent_state == "failed" else TaskFactory(status=Task.Status.CANCELED)
    child = enqueue(dependencies=[parent.id])
    task = get(child)
    assert (task.status, task.error, task.cancel_attempted) == (Task.Status.CANCELED, reason, True)


def test_a_dependency_waiting_for_its_retry_keeps_the_child_waiting():
    parent = TaskFactory(failed=True, next_retry_time=datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC))
    child = enqueue(dependencies=[parent.id])
    assert (get(child).status, get(child).dependencies_left) == (Task.Status.PENDING, 1)


# --- claim -------------------------------------------------------------------------------


def test_claim_takes_the_highest_priority_then_the_oldest():
    old_low = enqueue(payload={"n": 1})
    new_low = enqueue(payload={"n": 2})
    high = enqueue(payload={"n": 3}, priority=1)
    order = [run.task.id for run in queue.claim(["test.record"], 10)]
    assert order == [high, old_low, new_low]


def test_claim_only_takes_the_given_types():
    other = enqueue("diagnostics.noop")
    mine = enqueue("test.record")
    assert [run.task.id for run in queue.claim(["test.record"], 10)] == [mine]
    assert get(other).status == Task.Status.PENDING


def test_claim_starts_the_run_with_a_token_and_a_heartbeat():
    task_id = enqueue(payload={"k": "v"}, account_id="acct-7")
    run = claim_one()
    task = get(task_id)
    assert task.status == Task.Status.RUNNING
    assert task.token == run.token and task.started_at is not None
    assert run.task.payload == {"k": "v"}
    assert run.task.account_id == "acct-7"  # the original's queue never read it back
    assert Heartbeat.objects.get(token=run.token).task_id == task_id


def test_claim_respects_its_limit():
    for _ in range(5):
        enqueue()
    assert len(queue.claim(["test.record"], 3)) == 3
    assert Task.objects.filter(status=Task.Status.PENDING).count() == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_take_the_same_task():
    ids = {enqueue() for _ in range(200)}
    claimed: list[uuid.UUID] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def claimer():
        start.wait()
        try:
            while runs := queue.claim(["test.record"], 3):
                with lock:
                    claimed.extend(run.task.id for run in runs)
        finally:
            connection.close()

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(claimed) == len(set(claimed)) == 200
    assert set(claimed) == ids


# --- finish ------------------------------------------------------------------------------


def test_complete_is_fenced_by_the_runs_token():
    task_id = enqueue()
    run = claim_one()
    stranger = queue.Run(task=run.task, token=uuid.uuid4())
    assert not queue.complete(stranger)
    assert get(task_id).status == Task.Status.RUNNING
    assert queue.complete(run)
    task = get(task_id)
    assert (task.status, task.error, task.next_retry_time) == (Task.Status.COMPLETED, None, None)
    assert task.finished_at >= task.started_at
    assert not Heartbeat.objects.filter(token=run.token).exists()
    assert not queue.complete(run)  # a second finish changes nothing


def test_fail_stores_a_clean_error_and_cancels_every_descendant():
    root = enqueue(payload={"n": "root"})
    child = enqueue(payload={"n": "child"}, dependencies=[root])
    grandchild = enqueue(payload={"n": "grandchild"}, dependencies=[child])
    unrelated = enqueue(payload={"n": "unrelated"})
    run = queue.claim(["test.record"], 1)[0]
    assert run.task.id == root
    owned, retry_at = queue.fail(run, "bad\x00 bytes \udcff" + "x" * 5000, requeueable=False)
    assert owned and retry_at is None
    failed = get(root)
    assert failed.status == Task.Status.FAILED
    assert failed.error.startswith("bad bytes ?") and len(failed.error) == 4000
    for descendant in (child, grandchild):
        task = get(descendant)
        assert (task.status, task.error, task.cancel_attempted) == (
            Task.Status.CANCELED,
            queue.PARENT_FAILED,
            True,
        )
    assert get(unrelated).status == Task.Status.PENDING


def test_cancel_of_a_running_task_cancels_its_descendants_and_leaves_the_heartbeat_to_its_pool():
    """A cancel made in a caller's transaction takes no heartbeat lock, which would stall the
    pool's heartbeats until the caller commits; the run's pool drops the heartbeat when its
    handler has stopped, and a rescue never requeues a canceled task."""
    parent = enqueue(payload={"n": "parent"})
    parent_run = claim_one()
    assert queue.complete(parent_run)
    child = enqueue(payload={"n": "child"}, dependencies=[parent])
    child_run = claim_one()
    assert child_run.task.id == child
    grandchild = enqueue(payload={"n": "grandchild"}, dependencies=[child])
    assert queue.cancel(child) == Task.Status.RUNNING
    assert get(grandchild).status == Task.Status.CANCELED
    assert queue.refresh_heartbeats([child_run]) == {child_run.token}  # the pool learns it is lost
    queue.finish_and_claim([queue.Outcome(child_run, queue.Ending.STOPPED)], [], 0)
    assert not Heartbeat.objects.filter(token=child_run.token).exists()
    assert get(child).status == Task.Status.CANCELED


@pytest.mark.parametrize(("retries", "hours"), [(0, 3), (1, 4), (2, 6)])
def test_a_requeueable_failure_gets_its_backoff(settings, retries, hours):
    settings.TASKING = {**settings.TASKING, "RETRY_WAIT_UPPER_BOUND": 12 * 3600.0}
    task_id = enqueue("test.flaky")
    Task.objects.filter(pk=task_id).update(retries=retries)
    run = claim_one("test.flaky")
    before = db_now()
    owned, retry_at = queue.fail(run, "boom", requeueable=True)
    after = db_now()
    assert owned
    wait = datetime.timedelta(hours=hours)
    assert before + wait <= retry_at <= after + wait
    assert get(task_id).next_retry_time == retry_at


def test_a_requeueable_failure_keeps_its_dependents_waiting_for_the_retry():
    parent = enqueue("test.flaky")
    child = enqueue(dependencies=[parent])
    owned, retry_at = queue.fail(claim_one("test.flaky"), "boom", requeueable=True)
    assert owned and retry_at is not None
    assert (get(child).status, get(child).dependencies_left) == (Task.Status.PENDING, 1)


def test_no_retry_after_the_last_one():
    task_id = enqueue("test.flaky")
    Task.objects.filter(pk=task_id).update(retries=3)
    owned, retry_at = queue.fail(claim_one("test.flaky"), "boom", requeueable=True)
    assert owned and retry_at is None


# --- cancel ------------------------------------------------------------------------------


def test_cancel_a_pending_task():
    task_id = enqueue("test.gate", payload={"gate": "g"})
    assert queue.cancel(task_id) == Task.Status.PENDING
    task = get(task_id)
    assert (task.status, task.error, task.cancel_attempted) == (Task.Status.CANCELED, "task canceled", True)
    assert queue.claim(["test.gate"], 1) == []


def test_a_canceled_run_can_never_complete_or_fail():
    task_id = enqueue("test.gate", payload={"gate": "g"})
    run = claim_one("test.gate")
    queue.cancel(task_id)
    assert not queue.complete(run)
    assert queue.fail(run, "late failure", requeueable=True) == (False, None)
    assert get(task_id).status == Task.Status.CANCELED


def test_cancel_of_a_completed_task_leaves_it_and_its_dependents_alone():
    parent = enqueue()
    assert queue.complete(claim_one())
    child = enqueue(dependencies=[parent])
    assert queue.cancel(parent) == Task.Status.COMPLETED
    assert (get(parent).status, get(parent).cancel_attempted) == (Task.Status.COMPLETED, True)
    assert get(child).status == Task.Status.PENDING


def test_cancel_of_a_failed_task_stops_its_retry_and_cancels_its_dependents():
    parent = enqueue("test.flaky")
    child = enqueue(dependencies=[parent])
    queue.fail(claim_one("test.flaky"), "boom", requeueable=True)
    assert queue.cancel(parent) == Task.Status.FAILED
    task = get(parent)
    assert (task.status, task.next_retry_time, task.cancel_attempted) == (Task.Status.FAILED, None, True)
    assert (get(child).status, get(child).error) == (Task.Status.CANCELED, queue.PARENT_FAILED)


def test_cancel_of_an_unknown_task():
    with pytest.raises(TaskNotFound):
        queue.cancel(uuid.uuid4())


# --- requeue -----------------------------------------------------------------------------


def test_requeue_of_a_dead_run_counts_a_retry_and_clears_the_last_run():
    task_id = enqueue()
    queued_at = get(task_id).queued_at
    run = claim_one()
    Task.objects.filter(pk=task_id).update(error="stale error", next_retry_time=db_now())
    assert queue.requeue(task_id, run.token, count_retry=True) == Task.Status.PENDING
    task = get(task_id)
    assert (task.status, task.retries, task.token, task.started_at) == (Task.Status.PENDING, 1, None, None)
    assert (task.error, task.next_retry_time) == (None, None)
    assert task.queued_at == queued_at  # the creation time does not move
    assert not Heartbeat.objects.filter(token=run.token).exists()


def test_a_shutdown_requeue_does_not_use_a_retry():
    task_id = enqueue()
    run = claim_one()
    assert queue.requeue(task_id, run.token, count_retry=False) == Task.Status.PENDING
    assert get(task_id).retries == 0


@pytest.mark.parametrize("retries", [3, 5])
def test_requeue_past_the_retry_cap_fails_the_task_and_its_dependents(retries):
    """The original tested `retries == 3`, so a task past 3 was requeued without end."""
    task_id = enqueue()
    child = enqueue(dependencies=[task_id])
    Task.objects.filter(pk=task_id).update(retries=retries)
    run = claim_one()
    assert queue.requeue(task_id, run.token, count_retry=True) == Task.Status.FAILED
    task = get(task_id)
    assert (task.status, task.error, task.next_retry_time) == (Task.Status.FAILED, queue.MAX_RETRIES_ERROR, None)
    assert get(child).status == Task.Status.CANCELED


def test_requeue_is_fenced_by_the_runs_token():
    task_id = enqueue()
    claim_one()
    assert queue.requeue(task_id, uuid.uuid4(), count_retry=True) is None
    assert get(task_id).status == Task.Status.RUNNING


# --- heartbeats ---------------------------------------------------------------------------

# Short, since a rescue waits until the janitor's session is a whole timeout old.
STALE_AFTER = 1


def session_age(conn=None) -> float:
    """Seconds since the session (Django's, or `conn`) started."""
    query = (
        "SELECT extract(epoch FROM clock_timestamp() - backend_start) FROM pg_stat_activity"
        " WHERE pid = pg_backend_pid()"
    )
    if conn is not None:
        return float(conn.execute(query).fetchone()[0])
    with connection.cursor() as cursor:
        cursor.execute(query)
        return float(cursor.fetchone()[0])


@pytest.fixture
def janitor_session():
    """This thread's database session, old enough to rescue runs STALE_AFTER stale."""
    time.sleep(max(0.0, STALE_AFTER - session_age()))


def test_requeue_stale_rescues_old_heartbeats_only(janitor_session):
    stale = HeartbeatFactory(age=120)
    fresh = HeartbeatFactory(age=0)
    rescued = queue.requeue_stale(timeout=STALE_AFTER)
    assert rescued == [(stale.task_id, Task.Status.PENDING)]
    assert (get(stale.task_id).status, get(stale.task_id).retries) == (Task.Status.PENDING, 1)
    assert get(fresh.task_id).status == Task.Status.RUNNING


@pytest.mark.django_db(transaction=True)
def test_no_rescue_until_the_janitors_session_is_a_whole_timeout_old():
    """Workers cannot beat while the server is down or failing over: the first janitor back
    would otherwise requeue every live run as soon as it reconnects."""
    connection.close()
    beat = HeartbeatFactory(age=3600)  # the new session is younger than the 60 s timeout
    assert queue.requeue_stale(timeout=60) == []
    assert get(beat.task_id).status == Task.Status.RUNNING


def test_an_end_recorded_twice_counts_its_task_off_its_dependents_once():
    """A pool re-sends the ends of a transaction whose commit it did not see acknowledged."""
    first_parent, second_parent = enqueue(payload={"n": 1}), enqueue(payload={"n": 2})
    child = enqueue(dependencies=[first_parent, second_parent])
    first_run = next(run for run in queue.claim(["test.record"], 2) if run.task.id == first_parent)
    assert queue.complete(first_run)
    assert not queue.complete(first_run)  # the same end again
    assert get(child).dependencies_left == 1
    assert queue.claim(["test.record"], 5) == []  # the child still waits for its second parent


@pytest.mark.django_db(transaction=True)
def test_a_rescue_and_an_end_of_the_same_run_never_wait_for_each_other(janitor_session):
    """Both skip a run the other holds: the end is recorded later, or finds the run lost."""
    task_id = enqueue()
    run = claim_one()
    Heartbeat.objects.update(heartbeat=db_now() - datetime.timedelta(minutes=5))
    params = {"ids": [run.task.id], "tokens": [run.token]}
    with listen_connection() as janitor, listen_connection() as worker:
        janitor.autocommit = worker.autocommit = False
        janitor.execute("SET statement_timeout = '5s'")
        worker.execute("SET statement_timeout = '5s'")
        time.sleep(max(0.0, STALE_AFTER - session_age(janitor)))
        stale = janitor.execute(QUERIES["stale_heartbeats"], {"timeout": STALE_AFTER}).fetchall()
        assert stale == [(task_id, run.token, None)]
        # The pool's step, while the rescue holds the run: skipped at once, still owned.
        assert worker.execute(QUERIES["lock_ends"], params).fetchall() == [(task_id, True, False)]
        worker.rollback()
        requeue = {"id": task_id, "token": run.token, "count_retry": 1, "max_retries": 3}
        assert janitor.execute(QUERIES["requeue"], requeue).fetchone()[0] is True
        janitor.commit()
        # Tried again after the rescue: the run no longer owns its task.
        assert worker.execute(QUERIES["lock_ends"], params).fetchall() == [(task_id, False, False)]
        worker.rollback()
    assert (get(task_id).status, get(task_id).retries) == (Task.Status.PENDING, 1)
    assert not Heartbeat.objects.exists()


def test_a_late_rescue_cannot_requeue_the_next_run(janitor_session):
    """The original's heartbeat listeners could requeue a task that another run had just taken."""
    task_id = enqueue()
    first = claim_one()
    Heartbeat.objects.filter(token=first.token).update(heartbeat=db_now() - datetime.timedelta(minutes=5))
    assert queue.requeue_stale(timeout=STALE_AFTER) == [(task_id, Task.Status.PENDING)]
    second = claim_one()
    # A second rescuer acting on the first run's token changes nothing.
    assert queue.requeue(task_id, first.token, count_retry=True) is None
    assert queue.requeue_stale(timeout=STALE_AFTER) == []
    assert get(task_id).token == second.token and get(task_id).status == Task.Status.RUNNING


def test_requeue_stale_drops_heartbeats_of_runs_that_lost_their_task(janitor_session):
    beat = HeartbeatFactory(age=120)
    Task.objects.filter(pk=beat.task_id).update(token=uuid.uuid4())  # another run owns it now
    assert queue.requeue_stale(timeout=STALE_AFTER) == []
    assert not Heartbeat.objects.filter(token=beat.token).exists()


def test_refresh_heartbeats_reports_the_runs_that_lost_their_task():
    kept = enqueue(payload={"n": 1})
    lost = enqueue(payload={"n": 2})
    runs = {run.task.id: run for run in queue.claim(["test.record"], 2)}
    queue.cancel(lost)
    assert queue.refresh_heartbeats([runs[kept], runs[lost]]) == {runs[lost].token}


def test_update_payload_is_fenced_by_the_runs_token():
    task_id = enqueue(payload={"step": 0})
    run = claim_one()
    assert queue.update_payload(run, '{"step": 1}')
    assert not queue.update_payload(queue.Run(task=run.task, token=uuid.uuid4()), '{"step": 99}')
    assert get(task_id).payload == {"step": 1}


# --- retries of failed tasks ---------------------------------------------------------------


def test_retry_failed_requeues_due_tasks_only():
    past = db_now() - datetime.timedelta(seconds=1)
    due = TaskFactory(failed=True, next_retry_time=past)
    later = TaskFactory(failed=True, next_retry_time=past + datetime.timedelta(hours=1))
    canceled = TaskFactory(failed=True, next_retry_time=past, cancel_attempted=True)
    final = TaskFactory(failed=True)
    assert queue.retry_failed() == [due.id]
    task = get(due.id)
    assert (task.status, task.retries, task.error, task.finished_at) == (Task.Status.PENDING, 1, None, None)
    for other in (later, canceled, final):
        assert get(other.id).status == Task.Status.FAILED


def test_requeue_failed_puts_a_failed_task_back_with_its_retries_unused():
    failed = TaskFactory(failed=True, retries=2)
    pending = TaskFactory()
    assert queue.requeue_failed(failed.id) == Task.Status.FAILED
    task = get(failed.id)
    assert (task.status, task.retries, task.error, task.token) == (Task.Status.PENDING, 0, None, None)
    assert queue.requeue_failed(pending.id) == Task.Status.PENDING
    with pytest.raises(TaskNotFound):
        queue.requeue_failed(uuid.uuid4())


def test_requeue_failed_names_the_task_that_holds_its_unique_key_and_changes_nothing():
    key = f"key-{uuid.uuid4()}"
    failed = TaskFactory(failed=True, unique_key=key)
    holder = TaskFactory(unique_key=key)
    with transaction.atomic():  # the caller's transaction stays usable
        with pytest.raises(TaskAlreadyQueued) as raised:
            queue.requeue_failed(failed.id)
        assert raised.value.task_id == holder.id
        assert get(failed.id).status == Task.Status.FAILED
    queue.cancel(holder.id)
    assert queue.requeue_failed(failed.id) == Task.Status.FAILED
    assert get(failed.id).status == Task.Status.PENDING


# --- the SQL file --------------------------------------------------------------------------


def test_every_query_is_loaded():
    assert {"claim", "lock_ends", "complete_ends", "fail", "requeue", "cancel_task", "refresh_heartbeats"} <= set(
        QUERIES
    )
    assert all(not sql.rstrip().endswith(";") and "-- name" not in sql for sql in QUERIES.values())


def test_the_loader_rejects_a_duplicate_name():
    with pytest.raises(ValueError, match="defined twice"):
        load_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"priority": 2**31}, "InvalidTask", "priority must be an integer"),
        ({"org_id": "x" * 256}, "InvalidTask", "org_id is longer than 255"),
        ({"dependencies": ["not-a-uuid"]}, "DependencyNotFound", "dependency is not a task id: 'not-a-uuid'"),
        ({"payload": {"when": object()}}, "InvalidPayload", "not JSON-serialisable"),
        ({"payload": {"text": "nul\x00byte"}}, "InvalidPayload", "NUL character"),
        ({"payload": "x" * (1024 * 1024)}, "InvalidPayload", "over the limit of 1048576"),
        ({"org_id": "a\x00b"}, "InvalidTask", "org_id is not storable text"),
        ({"account_id": "a\udcffb"}, "InvalidTask", "account_id is not storable text"),
        ({"object_type": 12}, "InvalidTask", "object_type must be a string, not int"),
        ({"request_id": b"req"}, "InvalidTask", "request_id must be a string, not bytes"),
        ({"request_id": "r\x00"}, "InvalidTask", "request_id is not storable text"),
        ({"object_uuid": "nope"}, "InvalidTask", "object_uuid is not a UUID: 'nope'"),
        ({"unique_key": "k\udc80"}, "InvalidTask", "unique_key is not storable text"),
        ({"priority": True}, "InvalidTask", "priority must be an integer"),
        ({"dependencies": uuid.UUID(int=1)}, "InvalidTask", "dependencies must be a list of task ids"),
        ({"dependencies": "0000"}, "InvalidTask", "dependencies must be a list of task ids"),
    ],
)
def test_bad_enqueue_arguments_get_a_clear_error_and_write_nothing(kwargs, error, message):
    from tasks import exceptions

    payload = kwargs.pop("payload", {})
    with pytest.raises(getattr(exceptions, error), match=message):
        client.enqueue("test.record", payload, **kwargs)
    assert not Task.objects.exists()


def test_client_cancel_returns_the_previous_status():
    from tasks.exceptions import TaskNotCancellable

    task_id = enqueue("test.gate", payload={"gate": "g"})
    assert client.cancel(task_id) == Task.Status.PENDING
    assert client.cancel(task_id) == Task.Status.CANCELED
    with pytest.raises(TaskNotCancellable, match="cannot be canceled"):
        client.cancel(enqueue("test.record"))
    with pytest.raises(TaskNotFound):
        client.cancel(uuid.uuid4())


def test_enqueue_many_queues_one_task_per_payload_in_order():
    parent = enqueue()
    ids = client.enqueue_many("test.record", [{"n": n} for n in range(5)], dependencies=[parent], priority=1)
    tasks = {task.id: task for task in Task.objects.filter(pk__in=ids).prefetch_related("dependencies")}
    assert [tasks[task_id].payload for task_id in ids] == [{"n": n} for n in range(5)]
    assert all(task.priority == 1 and task.dependencies_left == 1 for task in tasks.values())
    assert all([d.id for d in task.dependencies.all()] == [parent] for task in tasks.values())


def test_enqueue_many_queues_nothing_when_one_payload_is_invalid():
    from tasks.exceptions import InvalidPayload

    with pytest.raises(InvalidPayload):
        client.enqueue_many("test.record", [{"n": 1}, {"n": object()}])
    assert not Task.objects.exists()
    assert client.enqueue_many("test.record", []) == []


def test_a_unique_key_stays_held_by_a_failed_task_waiting_for_its_retry():
    """Else a second task could take the key, and the retry of the first would break the
    unique index (and with it every retry of the batch)."""
    from tasks.exceptions import TaskAlreadyQueued

    first = client.enqueue("test.flaky", {}, unique_key="refresh:1")
    owned, retry_at = queue.fail(claim_one("test.flaky"), "boom", requeueable=True)
    assert owned and retry_at is not None
    with pytest.raises(TaskAlreadyQueued) as raised:
        client.enqueue("test.flaky", {}, unique_key="refresh:1")
    assert raised.value.task_id == first
    Task.objects.filter(pk=first).update(next_retry_time=db_now() - datetime.timedelta(seconds=1))
    assert queue.retry_failed() == [first]
    queue.cancel(first)
    assert client.enqueue("test.flaky", {}, unique_key="refresh:1") != first  # the key is free again


@pytest.mark.django_db(transaction=True)
def test_a_failed_enqueue_inside_a_callers_transaction_leaves_the_callers_writes_to_commit():
    """Without its savepoint, a failed insert aborted the caller's transaction behind Django's
    back: the caller caught the error, and its COMMIT silently rolled back its own rows."""
    with transaction.atomic():
        mine = TaskFactory()
        with pytest.raises(DatabaseError):
            queue.enqueue(type="test.record", payloads_json=["{}"], org_id="x" * 300)
    assert Task.objects.filter(pk=mine.pk).exists()
