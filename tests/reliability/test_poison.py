"""Scenario 6: a poison task crashes its whole process (os._exit) at every run. A supervisor
restarts the processes; after 3 retries the task is failed with a reason that says so, and
the pool keeps serving the other tasks."""

from tasks import client
from tasks.models import Task
from tasks.queue import MAX_RETRIES_ERROR
from tests.reliability import ledger


def completed(ids) -> bool:
    return Task.objects.filter(pk__in=ids, status=Task.Status.COMPLETED).count() == len(ids)


def test_a_task_that_crashes_its_process_is_failed_after_3_retries(fleet, summary):
    # One worker per process: a crash takes down the poison's run only.
    pools = fleet("--workers", "1")
    pools.start()
    pools.start()
    poison = client.enqueue("reliability.crash")
    others = client.enqueue_many("reliability.work", [{"seconds": 0.05}] * 20)
    pools.until(
        lambda: Task.objects.get(pk=poison).status == Task.Status.FAILED,
        timeout=90,
        message="the poison task to be failed",
    )
    later = client.enqueue_many("reliability.work", [{"seconds": 0}] * 10)
    pools.until(lambda: completed(others + later), timeout=30, message="the other tasks to complete")

    task = Task.objects.get(pk=poison)
    by_task = ledger.runs()
    overlaps = ledger.overlaps(by_task, pools.deaths)
    summary(
        "poison task",
        tasks=1 + len(others) + len(later),
        crashes=len(pools.exits),
        poison_runs=len(by_task[poison]),
        retries=task.retries,
        poison_status=task.status,
        others_completed=len(others) + len(later),
        overlaps=len(overlaps),
    )
    assert (task.status, task.retries, task.error) == (Task.Status.FAILED, 3, MAX_RETRIES_ERROR)
    assert len(by_task[poison]) == 4  # the first run and 3 retries, each a crash
    assert pools.exits == [1] * 4
    assert overlaps == []
    assert not Task.objects.filter(pk__in=others + later).exclude(retries=0).exists()
