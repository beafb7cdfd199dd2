"""The framework called from inside callers' transactions, as the domain and the API call it.

Whatever a caller holds open, the pool keeps recording ends, claiming, beating and stopping
within its grace; no live run is rescued; and the queue's own locks never deadlock.
"""

import random
import threading
import time
from collections.abc import Callable

import pytest
from django.db import connection, transaction

from tasks import client, queue
from tasks.models import Heartbeat, Task
from tasks.pool import SAFETY_RECHECK
from tests.factories import TaskFactory
from tests.handlers import recorder
from tests.helpers import wait_until

HOLD_LIMIT = 30.0  # no caller thread holds its transaction longer than this


def status(task_id) -> str:
    return Task.objects.values_list("status", flat=True).get(pk=task_id)


def run_count(task_id) -> int:
    return sum(1 for run in recorder.runs if run["id"] == task_id)


class HeldTransaction:
    """Runs `work` in a transaction.atomic() on a thread of its own, then holds the
    transaction open until `release()`; the thread closes its connection at the end."""

    def __init__(self, work: Callable[[], object]):
        self.result: object = None
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(work,), name="caller")
        self._thread.start()
        assert self._done.wait(10), "the caller's work did not finish"
        if self.error is not None:
            raise self.error

    def _run(self, work: Callable[[], object]) -> None:
        try:
            with transaction.atomic():
                try:
                    self.result = work()
                except BaseException as exc:
                    self.error = exc
                    raise
                finally:
                    self._done.set()
                self._release.wait(HOLD_LIMIT)
        except BaseException:
            pass
        finally:
            connection.close()

    def release(self) -> None:
        self._release.set()
        self._thread.join(10)
        assert not self._thread.is_alive()


@pytest.fixture
def held():
    """Start held transactions; each is released at the end of the test."""
    holders: list[HeldTransaction] = []

    def hold(work: Callable[[], object]) -> HeldTransaction:
        holder = HeldTransaction(work)
        holders.append(holder)
        return holder

    yield hold
    for holder in holders:
        holder.release()


def test_an_enqueue_held_open_delays_only_the_end_of_its_dependency(start_pool, held):
    """Measured before the fix: unrelated tasks took 6 s while a caller held its transaction."""
    start_pool(workers=2)
    parent = client.enqueue("test.gate", {"gate": "parent"})
    wait_until(lambda: run_count(parent) == 1, message="the parent to start")
    caller = held(lambda: client.enqueue("test.record", {"n": "child"}, dependencies=[parent]))
    recorder.gate("parent").set()  # the parent's handler returns while the caller holds its edge
    started = time.monotonic()
    for n in range(5):
        task_id = client.enqueue("test.record", {"n": n})
        wait_until(lambda task_id=task_id: run_count(task_id) == 1, timeout=2.0, message="an unrelated task")
    assert time.monotonic() - started < 2.0
    assert status(parent) == Task.Status.RUNNING  # its end waits for the caller
    caller.release()
    wait_until(lambda: status(caller.result) == Task.Status.COMPLETED, message="the child to run after commit")
    assert status(parent) == Task.Status.COMPLETED


def test_a_cancel_held_open_does_not_stop_the_heartbeats_of_other_runs(start_pool, held):
    """Measured before the fix: another run stopped beating and was rescued while it ran."""
    start_pool(workers=2)
    start_pool(workers=1, types=["test.record"])  # a second pool, whose janitor rescues stale runs
    doomed = client.enqueue("test.gate", {"gate": "doomed"})
    other = client.enqueue("test.gate", {"gate": "other"})
    wait_until(lambda: run_count(doomed) == run_count(other) == 1, message="both tasks to start")
    caller = held(lambda: client.cancel(doomed))
    time.sleep(3.0)  # three heartbeat timeouts (1 s in tests): the time a rescue would need
    assert Task.objects.get(pk=other).retries == 0
    assert run_count(other) == 1
    caller.release()
    wait_until(lambda: status(doomed) == Task.Status.CANCELED, message="the cancel to commit")
    recorder.gate("other").set()
    wait_until(lambda: status(other) == Task.Status.COMPLETED, message="the other task to complete")
    assert run_count(other) == 1


def test_the_pool_stops_within_its_grace_while_a_caller_holds_a_run_it_must_record(start_pool, held):
    pool = start_pool(workers=1)
    parent = client.enqueue("test.gate", {"gate": "parent"})
    wait_until(lambda: run_count(parent) == 1, message="the parent to start")
    held(lambda: client.enqueue("test.record", dependencies=[parent]))
    recorder.gate("parent").set()
    wait_until(lambda: pool.running() and all(c.ended for c in pool.running()), message="the handler to return")
    started = time.monotonic()
    pool.stop(grace=1.0)
    assert time.monotonic() - started < 1.5


@pytest.mark.django_db(transaction=True)
def test_enqueues_and_ends_of_chained_dependencies_never_deadlock():
    """An enqueue depends on every task of a chain while the chain's root is completed or
    cancelled: locks taken in opposite orders would deadlock (measured before the fix:
    `deadlock detected` raised from enqueue). Counted by the server, so a deadlock that a
    retry hid would still fail the test."""

    before = deadlocks()
    errors: list[str] = []
    rounds = 40
    for round_ in range(rounds):
        root = client.enqueue("test.gate", {"gate": "never"})
        [run] = queue.claim(["test.gate"], 1)
        chain = [root]
        for _ in range(6):
            chain.append(client.enqueue("test.gate", {"gate": "never"}, dependencies=[chain[-1]]))
        dependencies = list(chain)
        random.shuffle(dependencies)
        barrier = threading.Barrier(2, timeout=10)

        def enqueue_on_all(dependencies=dependencies, barrier=barrier) -> None:
            try:
                barrier.wait()
                with transaction.atomic():
                    client.enqueue("test.record", dependencies=dependencies)
            except Exception as exc:
                errors.append(f"enqueue: {exc!r}")
            finally:
                connection.close()

        def end_root(root=root, run=run, round_=round_, barrier=barrier) -> None:
            try:
                barrier.wait()
                if round_ % 2:
                    client.cancel(root)
                else:
                    queue.finish_and_claim([queue.Outcome(run, queue.Ending.COMPLETED)], [], 0)
            except Exception as exc:
                errors.append(f"end: {exc!r}")
            finally:
                connection.close()

        threads = [threading.Thread(target=enqueue_on_all), threading.Thread(target=end_root)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert errors == []
    assert deadlocks() == before


def test_an_end_held_at_shutdown_is_handed_over_and_never_run_again(start_pool, held):
    """A handler that returned while a caller holds its task: at the stop deadline its end is
    left in its heartbeat row, and the next janitor pass records it once the caller commits."""
    pool = start_pool(workers=1)
    parent = client.enqueue("test.gate", {"gate": "parent"})
    wait_until(lambda: run_count(parent) == 1, message="the parent to start")
    caller = held(lambda: client.enqueue("test.record", {"n": "child"}, dependencies=[parent]))
    recorder.gate("parent").set()
    wait_until(lambda: pool.running() and all(c.ended for c in pool.running()), message="the handler to return")
    pool.stop(grace=1.0)
    assert status(parent) == Task.Status.RUNNING  # held, not requeued: it must not run again
    assert Heartbeat.objects.get(task_id=parent).ending == {"as": "completed", "error": None, "requeueable": False}
    assert queue.requeue_stale(timeout=60) == []  # still held by the caller
    caller.release()
    assert queue.requeue_stale(timeout=60) == [(parent, Task.Status.COMPLETED)]
    assert not Heartbeat.objects.filter(task_id=parent).exists()
    assert Task.objects.get(pk=caller.result).dependencies_left == 0  # the child may run now
    assert run_count(parent) == 1


def test_an_end_held_open_does_not_postpone_the_safety_recheck(start_pool, held):
    """A ready task inserted without a notification is found by the 5 s re-check, even while
    the pool retries an end that a caller holds."""
    start_pool(workers=2)
    parent = client.enqueue("test.gate", {"gate": "parent"})
    wait_until(lambda: run_count(parent) == 1, message="the parent to start")
    held(lambda: client.enqueue("test.record", dependencies=[parent]))
    recorder.gate("parent").set()
    silent = TaskFactory(type="test.record")  # inserted without NOTIFY
    wait_until(lambda: run_count(silent.id) == 1, timeout=SAFETY_RECHECK + 3, message="the re-check to find it")


def test_a_canceled_run_that_returns_normally_leaves_no_heartbeat(start_pool):
    pool = start_pool(workers=1)
    task_id = client.enqueue("test.ignores_cancel")
    wait_until(lambda: run_count(task_id) == 1, message="the task to start")
    client.cancel(task_id)
    wait_until(lambda: pool.running() == [], message="the handler to return")
    wait_until(lambda: not Heartbeat.objects.filter(task_id=task_id).exists(), message="its heartbeat to go")
    assert status(task_id) == Task.Status.CANCELED


@pytest.mark.django_db(transaction=True)
def test_a_claim_locks_only_the_tasks_it_takes(held):
    """Another pool claiming meanwhile finds the rest: a claim reads the heads of every type it
    serves without locking them, and locks only what it takes."""
    types = ["test.record", "test.gate", "test.flaky"]
    for type_ in types:
        client.enqueue_many(type_, [{"gate": "g"}] * 5)
    first = held(lambda: queue.claim(types, 1))
    assert len(first.result) == 1
    others = queue.claim(types, 6)
    assert len(others) == 6 and first.result[0].task.id not in {run.task.id for run in others}


@pytest.mark.django_db(transaction=True)
def test_a_cancel_never_deadlocks_with_a_caller_enqueueing_on_both_ends_of_a_chain():
    """The caller's transaction enqueues on D, a cancel of D's ancestor R starts, then the
    caller enqueues on R (measured before the fix: `deadlock detected`): the cancel never
    waits while it holds a lock, so it steps aside until the caller commits, then cancels
    everything, new dependents included."""
    root = client.enqueue("test.gate", {"gate": "never"})
    middle = client.enqueue("test.gate", {"gate": "never"}, dependencies=[root])
    linked, go_on, release = threading.Event(), threading.Event(), threading.Event()
    results: dict[str, object] = {}

    def caller() -> None:
        try:
            with transaction.atomic():
                first = client.enqueue("test.record", dependencies=[middle])
                linked.set()
                go_on.wait(HOLD_LIMIT)
                results["enqueued"] = [first, client.enqueue("test.record", dependencies=[root])]
                release.wait(HOLD_LIMIT)
        except Exception as exc:
            results["caller error"] = repr(exc)
        finally:
            connection.close()

    def cancel_root() -> None:
        try:
            results["canceled"] = client.cancel(root)
        except Exception as exc:
            results["cancel error"] = repr(exc)
        finally:
            connection.close()

    before = deadlocks()
    threads = [threading.Thread(target=caller), threading.Thread(target=cancel_root)]
    threads[0].start()
    assert linked.wait(10)
    threads[1].start()
    time.sleep(0.2)  # a chance for the cancel to meet the caller's lock first: a race, on purpose
    go_on.set()
    wait_until(lambda: "enqueued" in results or "caller error" in results, message="the second enqueue")
    release.set()
    for thread in threads:
        thread.join(30)
    assert results.get("canceled") == Task.Status.PENDING, results
    enqueued = results["enqueued"]
    assert isinstance(enqueued, list)
    statuses = set(Task.objects.filter(pk__in=[root, middle, *enqueued]).values_list("status", flat=True))
    assert statuses == {Task.Status.CANCELED}
    assert deadlocks() == before


def deadlocks() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


def test_the_dispatcher_rests_while_it_waits_to_retry_a_held_end_at_shutdown(start_pool, held):
    pool = start_pool(workers=1)
    parent = client.enqueue("test.gate", {"gate": "parent"})
    wait_until(lambda: run_count(parent) == 1, message="the parent to start")
    held(lambda: client.enqueue("test.record", dependencies=[parent]))
    recorder.gate("parent").set()
    wait_until(lambda: pool.running() and all(c.ended for c in pool.running()), message="the handler to return")
    cpu_before, process_before = time.thread_time(), time.process_time()
    pool.stop(grace=2.0)
    spent = (time.process_time() - process_before) - (time.thread_time() - cpu_before)
    assert spent < 0.5, f"the pool used {spent:.2f}s of CPU in a 2 s stop"
