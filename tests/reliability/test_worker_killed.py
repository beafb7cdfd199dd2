"""Scenario 1: a worker process is SIGKILLed mid-task; another pool rescues and finishes it."""

import time

from tasks import client
from tasks.models import Task
from tests.helpers import wait_until
from tests.reliability import ledger


def test_a_killed_workers_tasks_run_again_elsewhere_without_overlap(fleet, summary):
    pools = fleet("--workers", "3")
    victim = pools.start()
    # Long first runs, to be killed in the middle; short second runs.
    ids = client.enqueue_many("reliability.work", [{"seconds": [600, 0.05]}] * 3)
    wait_until(lambda: len(ledger.runs()) == 3, message="the three tasks to start")
    assert {run.pid for runs in ledger.runs().values() for run in runs} == {victim.pid}
    pools.start()
    pools.kill(0)
    killed = time.time()
    wait_until(
        lambda: Task.objects.filter(pk__in=ids, status=Task.Status.COMPLETED).count() == 3,
        timeout=15,
        message="the rescue and second runs",
    )
    tasks = Task.objects.filter(pk__in=ids)
    by_task = ledger.runs()
    overlaps = ledger.overlaps(by_task, pools.deaths)
    summary(
        "worker killed mid-task",
        tasks=3,
        kills=pools.kills,
        retries=sum(task.retries for task in tasks),
        completed=len(tasks),
        overlaps=len(overlaps),
    )
    assert overlaps == []
    for task in tasks:
        first, second = by_task[task.id]
        assert (first.pid, first.ended) == (victim.pid, None)
        assert second.pid != victim.pid and second.ended is not None
        assert second.started - killed < 10
        assert task.retries == 1
