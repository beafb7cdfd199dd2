"""x-rh-insights-request-id (or an id made up when it is missing) is echoed on the response,
stored on every task the request enqueues, and on every log line of the request and of the
handlers of those tasks."""

import logging
import uuid

import pytest
from django.db import transaction

from repositories.models import Repository
from repositories.services import INTROSPECT
from tasks import client
from tasks.models import Task
from tests.api.conftest import API
from tests.api.factories import ORG_A, ConfigurationFactory, TaskFactory
from tests.helpers import wait_until

HEADER = "HTTP_X_RH_INSIGHTS_REQUEST_ID"


def lines_of(lines: list[str], start: int) -> list[str]:
    return [line for line in lines[start:] if line.strip()]


def test_the_request_id_is_echoed_and_stored_on_every_task_of_the_request(
    api, log_lines, django_capture_on_commit_callbacks
):
    start = len(log_lines)

    with django_capture_on_commit_callbacks(execute=True):  # the lines of what committed
        response = api.post(
            f"{API}repositories/",
            {"name": "r", "url": "https://a.example/", "snapshot": True},
            format="json",
            **{HEADER: "req-1"},
        )

    assert response.status_code == 201
    assert response["x-rh-insights-request-id"] == "req-1"
    tasks = Task.objects.order_by("seq")
    assert [(task.type, task.request_id) for task in tasks] == [("introspect", "req-1"), ("snapshot", "req-1")]
    request_lines = lines_of(log_lines, start)
    assert any("repository configuration created" in line for line in request_lines)
    assert sum("task enqueued" in line for line in request_lines) == 2
    assert all("request_id=req-1" in line for line in request_lines), request_lines


@pytest.mark.parametrize(
    ("action", "fields"),
    [("introspect", {}), ("snapshot", {"snapshot": True})],
)
def test_tasks_queued_by_an_action_carry_its_request_id(api, action, fields):
    configuration = ConfigurationFactory(**fields)

    response = api.post(f"{API}repositories/{configuration.uuid}/{action}/", **{HEADER: f"req-{action}"})

    assert response.status_code == 201
    assert Task.objects.get(id=response.json()["uuid"]).request_id == f"req-{action}"


def test_an_id_is_made_up_when_none_is_given(api, log_lines, django_capture_on_commit_callbacks):
    start = len(log_lines)

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"{API}repositories/", {"name": "r", "url": "https://a.example/"}, format="json")

    made_up = response["x-rh-insights-request-id"]
    assert str(uuid.UUID(made_up)) == made_up
    assert Task.objects.get().request_id == made_up
    assert all(f"request_id={made_up}" in line for line in lines_of(log_lines, start))


@pytest.mark.parametrize("given", ["a" * 65, "two words", "semi;colon", "new\nline"])
def test_an_id_unfit_for_logs_is_replaced(api, given):
    response = api.get(f"{API}tasks/", **{HEADER: given})

    assert response.status_code == 200
    assert str(uuid.UUID(response["x-rh-insights-request-id"])) == response["x-rh-insights-request-id"]


def test_error_answers_carry_the_request_id_and_so_do_their_log_lines(api, log_lines):
    start = len(log_lines)

    response = api.get(f"{API}tasks/?status=nope", **{HEADER: "req-400"})

    assert response.status_code == 400
    assert response["x-rh-insights-request-id"] == "req-400"
    request_lines = lines_of(log_lines, start)
    assert any("Bad Request: /api/content-sources/v1/tasks/" in line for line in request_lines)
    assert all("request_id=req-400" in line for line in request_lines), request_lines


def test_lines_after_the_request_carry_no_request_id(api, log_lines):
    api.get(f"{API}tasks/?status=nope", **{HEADER: "req-done"})

    logging.getLogger("contentsources.test").warning("after the request")

    assert log_lines[-1] == "WARNING contentsources.test after the request"


def test_the_handler_s_lines_carry_the_request_id_when_a_pool_runs_the_task(
    api, log_lines, start_pool, yum_server, repository
):
    server = yum_server()
    start = len(log_lines)
    response = api.post(
        f"{API}repositories/", {"name": "r", "url": server.url()}, format="json", **{HEADER: "req-pool"}
    )
    assert response.status_code == 201, response.content
    request_lines = lines_of(log_lines, start)
    task = Task.objects.get(type=INTROSPECT)

    start_pool(workers=1, types=[INTROSPECT])
    # The pool's line about the end comes once the end is recorded.
    ended = f"task completed task_id={task.id}"
    wait_until(lambda: any(ended in line for line in log_lines), timeout=30, message="the introspection")

    assert Repository.objects.get().package_count == 3
    assert all("request_id=req-pool" in line for line in request_lines), request_lines
    task_lines = [line for line in log_lines if f"task_id={task.id}" in line]
    handler_lines = [line for line in log_lines if line.startswith("INFO tasks.handler ")]
    assert any("repository introspected" in line and "packages=3" in line for line in handler_lines), log_lines
    assert all("request_id=req-pool" in line for line in task_lines + handler_lines), task_lines + handler_lines


def test_the_lines_of_a_cancel_carry_the_cancel_request_s_id(api, log_lines, django_capture_on_commit_callbacks):
    task = TaskFactory(type="diagnostics.sleep", org_id=ORG_A, request_id="req-enqueue")
    start = len(log_lines)

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"{API}tasks/{task.id}/cancel/", **{HEADER: "req-cancel"})

    assert response.status_code == 204
    request_lines = lines_of(log_lines, start)
    [canceled] = [line for line in request_lines if "task canceled" in line]
    assert "task_request_id=req-enqueue" in canceled  # the request that enqueued the task
    assert all(line.endswith(" request_id=req-cancel") for line in request_lines), request_lines


def test_a_bulk_create_that_rolls_back_logs_no_repository_and_no_task(
    api, log_lines, django_capture_on_commit_callbacks
):
    start = len(log_lines)
    good = {"name": "a", "url": "https://a.example/"}

    with django_capture_on_commit_callbacks(execute=True) as committed:
        response = api.post(f"{API}repositories/bulk_create/", [good, {**good, "name": "b"}], format="json")

    assert response.status_code == 400, response.content  # the second has the first's URL
    assert not Task.objects.exists()
    assert committed == []
    request_lines = lines_of(log_lines, start)
    assert not any("task enqueued" in line or "configuration created" in line for line in request_lines)


def test_a_cancel_that_rolls_back_logs_nothing(db, log_lines, django_capture_on_commit_callbacks):
    task = TaskFactory(type="diagnostics.sleep", org_id=ORG_A)
    start = len(log_lines)

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        with transaction.atomic():
            client.cancel(task.id)
            raise RuntimeError("the caller's transaction fails")

    task.refresh_from_db()
    assert task.status == Task.Status.PENDING
    assert not any("task canceled" in line for line in lines_of(log_lines, start))
    with django_capture_on_commit_callbacks(execute=True):
        client.cancel(task.id)
    assert any(f"task canceled task_id={task.id}" in line for line in lines_of(log_lines, start))
