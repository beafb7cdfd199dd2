import json
import logging
import uuid
from datetime import datetime

from tasks import client
from tasks.log import Fields, JsonFormatter, RedactingFormatter, current_request_id, redact, task_fields
from tasks.log_lines import TaskLogging
from tasks.models import Task
from tests.helpers import wait_until


def test_redact_hides_url_passwords_only():
    text = "fetch https://alice:s3cr%40t@mirror.example/repo/ failed; see http://mirror.example/x"
    assert redact(text) == "fetch https://alice:***@mirror.example/repo/ failed; see http://mirror.example/x"
    assert redact("postgres://u:p@db:5432/n and postgres://db/n") == "postgres://u:***@db:5432/n and postgres://db/n"


def test_the_formatter_redacts_messages_and_tracebacks():
    formatter = RedactingFormatter("%(message)s")
    try:
        raise RuntimeError("cannot reach https://bob:hunter2@host/")
    except RuntimeError as exc:
        record = logging.LogRecord(
            "t",
            logging.ERROR,
            __file__,
            1,
            "task failed url=%s",
            ("ftp://a:b@c/",),
            (type(exc), exc, exc.__traceback__),
        )
    text = formatter.format(record)
    assert "hunter2" not in text and ":b@" not in text
    assert "https://bob:***@host/" in text and "ftp://a:***@c/" in text


def json_line(record: logging.LogRecord) -> dict:
    line = JsonFormatter().format(record)
    assert "\n" not in line
    return json.loads(line)


def test_a_json_line_has_the_task_s_ids_as_fields_of_their_own():
    task = Task(id=uuid.uuid4(), type="reports.build", org_id="org-9", request_id="req-9")
    record = logging.LogRecord(
        "tasks.pool", logging.INFO, __file__, 1, "task completed %s duration=%s", (Fields(task), "0.1s"), None
    )

    line = json_line(record)

    assert line["level"] == "INFO" and line["logger"] == "tasks.pool"
    assert line["message"] == f"task completed {task_fields(task)} duration=0.1s"
    assert (line["task_id"], line["type"], line["org_id"], line["request_id"]) == (
        str(task.id),
        "reports.build",
        "org-9",
        "req-9",
    )
    assert datetime.fromisoformat(line["timestamp"]).tzinfo is not None
    assert "exc_info" not in line


def test_a_json_line_has_the_request_id_of_the_request_being_served_and_hides_passwords():
    record = logging.LogRecord("contentsources", logging.WARNING, __file__, 1, "fetch %s", ("https://u:pw@h/",), None)
    token = current_request_id.set("req-5")
    try:
        line = json_line(record)
    finally:
        current_request_id.reset(token)
    assert line["request_id"] == "req-5" and "task_id" not in line
    assert line["message"] == "fetch https://u:***@h/"
    assert "request_id" not in json_line(record)  # outside a request: no field


def test_the_json_lines_of_a_rescue_and_a_retry_carry_the_task_id(caplog):
    task_id = uuid.uuid4()
    with caplog.at_level(logging.INFO, logger="tasks.pool"):
        TaskLogging().task_rescued(task_id, "pending")
        TaskLogging().tasks_retried([task_id])

    lines = [json_line(record) for record in caplog.records]
    assert [line["message"].split(" task_id=")[0] for line in lines] == [
        "task rescued from a dead worker",
        "failed task requeued for retry",
    ]
    assert all(line["task_id"] == str(task_id) for line in lines), lines


def test_a_json_line_of_an_unexpected_error_carries_its_traceback():
    try:
        raise RuntimeError("boom at ftp://a:b@c/")
    except RuntimeError as exc:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", (), (type(exc), exc, exc.__traceback__))
    line = json_line(record)
    assert line["level"] == "ERROR"
    assert "Traceback (most recent call last)" in line["exc_info"] and "ftp://a:***@c/" in line["exc_info"]


def test_runworkers_with_log_format_json_writes_one_json_object_a_line(runworkers):
    process = runworkers("--workers", "1", LOG_FORMAT="json")
    done = client.enqueue("diagnostics.noop", org_id="org-1", request_id="req-json")
    failed = client.enqueue("diagnostics.fail", {"message": "on purpose"}, org_id="org-1", request_id="req-fail")
    wait_until(lambda: f'"task_id": "{failed}"' in process.log() and f'"task_id": "{done}"' in process.log())
    wait_until(lambda: "task failed" in process.log(), message="the failure's line")

    # createrepo_c's C library complains on stderr where no rpm configuration is installed.
    text = [line for line in process.log().splitlines() if line.strip() and not line.startswith("error: Unable to")]
    lines = [json.loads(line) for line in text]

    assert all({"timestamp", "level", "logger", "message"} <= line.keys() for line in lines)
    [started] = [line for line in lines if line["message"].startswith("pool started")]
    assert started["level"] == "INFO" and started["logger"] == "tasks.runworkers"
    [completed] = [line for line in lines if line.get("task_id") == str(done) and "completed" in line["message"]]
    assert (completed["type"], completed["org_id"], completed["request_id"]) == (
        "diagnostics.noop",
        "org-1",
        "req-json",
    )
    ends = [line for line in lines if line.get("task_id") == str(failed)]
    assert all(line["request_id"] == "req-fail" and line["org_id"] == "org-1" for line in ends), ends
    # The handler's exception is unexpected (diagnostics.fail declares no failures): its traceback at ERROR.
    [unexpected] = [line for line in ends if "exc_info" in line]
    assert unexpected["level"] == "ERROR" and "RuntimeError: on purpose" in unexpected["exc_info"]
    assert not [line for line in lines if "exc_info" in line and line is not unexpected]
