"""Scenario 3: SIGTERM with tasks running. Within the grace period the process exits 0; each
task it held is completed or back to pending without a retry used, and none is left running."""

import signal
import time

from tasks import client
from tasks.models import Heartbeat, Task
from tests.helpers import wait_until
from tests.reliability import ledger

GRACE = 2.0


def test_sigterm_completes_or_requeues_every_running_task_and_exits_0(fleet, summary):
    pools = fleet("--workers", "3", "--grace", str(GRACE))
    pools.start()
    finishes = client.enqueue("reliability.slow", {"seconds": 1.0})  # finishes within the grace
    stops = client.enqueue("reliability.work", {"seconds": [600, 0.05]})  # stops at the signal
    outlives = client.enqueue("reliability.slow", {"seconds": [600, 0.05]})  # deaf: outlives the grace
    ids = [finishes, stops, outlives]
    wait_until(lambda: len(ledger.runs()) == 3, message="the three tasks to start")

    signaled = time.monotonic()
    code = pools.stop(0, signal.SIGTERM, timeout=GRACE + 10)
    stopped_in = time.monotonic() - signaled
    tasks = {task.id: task for task in Task.objects.filter(pk__in=ids)}
    assert code == 0
    assert stopped_in < GRACE  # the pool keeps the grace's last half second to clean up
    assert tasks[finishes].status == Task.Status.COMPLETED
    for task_id in (stops, outlives):
        task = tasks[task_id]
        assert (task.status, task.retries, task.token) == (Task.Status.PENDING, 0, None)
    assert not Heartbeat.objects.exists()
    first_runs = {task_id: runs[0] for task_id, runs in ledger.runs().items()}
    assert first_runs[stops].ended is not None  # its handler did stop, not just its process

    # Nothing was lost: a new pool finishes what the old one put back, with no overlap.
    pools.start()
    wait_until(
        lambda: Task.objects.filter(pk__in=ids, status=Task.Status.COMPLETED).count() == 3,
        message="the requeued tasks to complete",
    )
    overlaps = ledger.overlaps(ledger.runs(), pools.deaths)
    summary(
        "graceful stop",
        tasks=3,
        kills=pools.kills,
        exit_code=code,
        stopped_in=f"{stopped_in:.1f}s",
        grace=f"{GRACE:.1f}s",
        retries=sum(Task.objects.filter(pk__in=ids).values_list("retries", flat=True)),
        completed_before_stop=1,
        requeued=2,
        overlaps=len(overlaps),
    )
    assert overlaps == []
    assert set(Task.objects.filter(pk__in=ids).values_list("retries", flat=True)) == {0}
