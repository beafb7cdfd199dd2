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
from tasks.models import Task
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

    def deadlocks() -> int:
        with connection.cursor() as cursor:
            cursor.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
            return int(cursor.fetchone()[0])

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
