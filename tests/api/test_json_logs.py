"""LOG_FORMAT=json end to end: a repository added over real HTTP, its introspection run by a
pool; the lines of the request and of the task carry, as fields, the request id of the HTTP
request that enqueued the task."""

import io
import json
import logging
import urllib.error
import urllib.request

import pytest

from contentsources.api.identity import encode_identity
from repositories.services import INTROSPECT
from tasks import client
from tasks.log import JsonFormatter
from tasks.models import Task
from tests.api.conftest import API
from tests.api.factories import ORG_A, TaskFactory
from tests.helpers import wait_until


@pytest.fixture
def json_lines():
    """Every line logged while the test runs, as the JSON formatter writes it, parsed."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect(level=logging.INFO)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    yield lines
    root.removeHandler(handler)


def test_a_task_s_json_lines_carry_the_request_id_of_the_request_that_enqueued_it(
    app_server, json_lines, start_pool, yum_server, repository
):
    server = yum_server()
    request = urllib.request.Request(
        f"{app_server}{API}repositories/",
        data=json.dumps({"name": "r", "url": server.url()}).encode(),
        headers={
            "Content-Type": "application/json",
            "x-rh-identity": encode_identity(org_id=ORG_A, user="alice"),
            "x-rh-insights-request-id": "req-json-1",
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201
    task = Task.objects.get(type=INTROSPECT)

    start_pool(workers=1, types=[INTROSPECT])
    wait_until(
        lambda: any(f'"task_id": "{task.id}"' in line and "task completed" in line for line in json_lines),
        timeout=30,
        message="the introspection",
    )

    lines = [json.loads(line) for line in json_lines]
    enqueued = [line for line in lines if line["message"].startswith("task enqueued")]
    assert enqueued and all(line["request_id"] == "req-json-1" for line in enqueued), enqueued
    of_task = [line for line in lines if line.get("task_id") == str(task.id)]
    handler_lines = [line for line in of_task if line["logger"] == "tasks.handler"]
    assert any("repository introspected" in line["message"] for line in handler_lines), of_task
    assert any(line["logger"] == "tasks.pool" and "task completed" in line["message"] for line in of_task)
    for line in of_task:
        assert (line["type"], line["org_id"], line["request_id"]) == (INTROSPECT, ORG_A, "req-json-1"), line


def test_the_json_lines_of_an_enqueue_and_a_cancel_carry_the_task_s_fields_and_the_request_s_id(
    api, json_lines, django_capture_on_commit_callbacks
):
    task = TaskFactory(type="diagnostics.sleep", org_id=ORG_A, request_id="req-enqueue")

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"{API}tasks/{task.id}/cancel/", HTTP_X_RH_INSIGHTS_REQUEST_ID="req-cancel")
        child = client.enqueue("diagnostics.noop", org_id=ORG_A, request_id="req-cancel")

    assert response.status_code == 204
    lines = {line["message"].split(" task_id=")[0]: line for line in map(json.loads, json_lines)}
    fields = ("task_id", "type", "org_id", "request_id")
    # The cancel is the cancelling request's line, about the task it canceled (text says the
    # same, with the enqueuing request as task_request_id).
    canceled = lines["task canceled"]
    assert [canceled.get(key) for key in fields] == [str(task.id), "diagnostics.sleep", ORG_A, "req-cancel"]
    enqueued = lines["task enqueued"]
    assert [enqueued.get(key) for key in fields] == [str(child), "diagnostics.noop", ORG_A, "req-cancel"]


def test_a_refused_host_is_a_warning_without_traceback(app_server):
    # The project's own handler, as the settings configure it, written to a buffer.
    [console] = [handler for handler in logging.getLogger().handlers if handler.filters]
    buffer = io.StringIO()
    stream = console.setStream(buffer)
    try:
        request = urllib.request.Request(f"{app_server}/healthz", headers={"Host": "evil.example"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
    finally:
        console.setStream(stream)
    assert refused.value.code == 400

    [line] = [line for line in buffer.getvalue().splitlines() if "django.security.DisallowedHost" in line]
    assert " WARNING django.security.DisallowedHost Invalid HTTP_HOST header: 'evil.example'" in line
    assert "Traceback" not in buffer.getvalue()
