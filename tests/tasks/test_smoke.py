from tasks import client
from tasks.models import Task
from tests.helpers import wait_until


def test_pool_runs_a_task(start_pool):
    start_pool()
    task_id = client.enqueue("test.record", {"n": 1})
    wait_until(lambda: Task.objects.get(pk=task_id).status == Task.Status.COMPLETED)


def test_runworkers_runs_a_task(runworkers):
    runworkers("--types", "diagnostics.noop")
    task_id = client.enqueue("diagnostics.noop")
    wait_until(lambda: Task.objects.get(pk=task_id).status == Task.Status.COMPLETED)
