import datetime
import io
import json
import re
import uuid

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from tasks import client
from tasks.models import Task
from tests.factories import HeartbeatFactory, TaskFactory
from tests.helpers import assert_one_line_command_error

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command("tasks", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def shown(output: str) -> dict[str, str]:
    """The `label: value` lines of `tasks show`."""
    return dict(re.findall(r"^(\w[\w ]*):\s+(.*)$", output, re.MULTILINE))


# enqueue


def test_enqueue_prints_only_the_id_and_stores_the_task():
    dependency = TaskFactory()
    output = run(
        "enqueue",
        "diagnostics.sleep",
        "--payload",
        '{"seconds": 2}',
        "--priority",
        "5",
        "--depends-on",
        str(dependency.id),
        "--org",
        "acme",
    )
    task = Task.objects.get(pk=uuid.UUID(output.strip()))
    assert output == f"{task.id}\n"
    assert (task.type, task.payload, task.priority, task.org_id) == ("diagnostics.sleep", {"seconds": 2}, 5, "acme")
    assert list(task.dependencies.all()) == [dependency]
    assert task.status == Task.Status.PENDING


def test_enqueue_without_payload_stores_null():
    task = Task.objects.get(pk=run("enqueue", "diagnostics.noop").strip())
    assert task.payload is None


@pytest.mark.parametrize(
    "args, message",
    [
        (["no.such.type"], r"unknown task type: 'no.such.type'.*registered types: .*diagnostics.noop"),
        (["diagnostics.noop", "--payload", "{seconds: 2}"], r"--payload is not valid JSON: Expecting property name"),
        (["diagnostics.noop", "--payload", "NaN"], r"payload is not JSON-serialisable"),
        (["diagnostics.noop", "--depends-on", "nope"], r"not a task id: 'nope' \(expected a UUID\)"),
        (["diagnostics.noop", "--depends-on", str(uuid.UUID(int=7))], r"dependency does not exist: 0{8}-.*-0{11}7"),
        (["diagnostics.noop", "--priority", str(2**31)], r"priority must be an integer from -2147483648 to 2147483647"),
    ],
)
def test_enqueue_rejects_bad_input(args, message):
    org = str(uuid.uuid4())
    with pytest.raises(CommandError, match=message):
        run("enqueue", *args, "--org", org)
    assert not Task.objects.filter(org_id=org).exists()


# list
# Other test runs may share the database and commit tasks, so each test lists its own type.


@pytest.fixture
def own_type():
    return f"test.list.{uuid.uuid4()}"


def listed_ids(*args) -> list[str]:
    return [line.split()[0] for line in run("list", *args).splitlines()[1:]]


def test_list_is_newest_first_aligned_and_limited(own_type):
    now = timezone.now()
    old = TaskFactory(type=own_type, queued_at=now - datetime.timedelta(hours=2))
    middle = TaskFactory(type=own_type, queued_at=now - datetime.timedelta(hours=1), priority=7, retries=2)
    new = TaskFactory(type=own_type, queued_at=now)

    lines = run("list", "--type", own_type).splitlines()
    assert lines[0].split() == ["id", "type", "status", "priority", "retries", "queued_at", "error"]
    assert [line.split()[0] for line in lines[1:]] == [str(new.id), str(middle.id), str(old.id)]
    # Aligned: every column starts where its header does.
    for header in ("status", "priority", "retries", "queued_at"):
        column = lines[0].index(header)
        assert all(line[column - 2 : column] == "  " and line[column] != " " for line in lines[1:])
    assert lines[2].split()[1:6] == [own_type, "pending", "7", "2", middle.queued_at.isoformat(timespec="seconds")]

    assert listed_ids("--type", own_type, "--limit", "2") == [str(new.id), str(middle.id)]


def test_list_filters_by_status(own_type):
    failed = TaskFactory(type=own_type, failed=True)
    TaskFactory(type=own_type)

    assert listed_ids("--type", own_type, "--status", "failed") == [str(failed.id)]
    assert run("list", "--type", own_type, "--status", "canceled") == "no tasks\n"


def test_list_puts_a_long_error_on_one_short_line(own_type):
    TaskFactory(type=own_type, failed=True, error="Traceback (most recent call last):\n" + "x" * 300)
    row = run("list", "--type", own_type).splitlines()[1]
    error = row.split("failed", 1)[1].split(None, 3)[3]
    assert error.startswith("Traceback (most recent call last): xxx")
    assert len(error) == 60 and error.endswith("…")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--status", "done"], r"unknown status 'done'; use one of: pending, running, completed, failed, canceled"),
        (["--limit", "0"], r"--limit must be from 1 to 100000: 0"),
    ],
)
def test_list_rejects_bad_filters(args, message):
    with pytest.raises(CommandError, match=message):
        run("list", *args)


# show


def test_show_prints_the_task_its_links_and_heartbeat_age():
    parent = TaskFactory(failed=True, status=Task.Status.COMPLETED, error=None)
    beat = HeartbeatFactory(age=30, task__payload={"seconds": 5}, task__request_id="req-1")
    task = beat.task
    task.dependencies.add(parent)
    child = TaskFactory(dependencies_left=1)
    child.dependencies.add(task)

    output = run("show", str(task.id))
    fields = shown(output)
    assert fields["status"] == "running"
    assert fields["type"] == "diagnostics.noop"
    assert json.loads(fields["payload"]) == {"seconds": 5}
    assert fields["org"] == "1234"
    assert fields["request id"] == "req-1"
    assert fields["queued at"] == task.queued_at.isoformat(timespec="seconds")
    assert fields["started at"] == task.started_at.isoformat(timespec="seconds")
    assert fields["finished at"] == "-"
    assert fields["cancel attempted"] == "no"
    assert 29.0 <= float(fields["heartbeat age"].rstrip("s")) < 60
    assert f"dependencies:\n  {parent.id}  completed\n" in output
    assert f"dependents:\n  {child.id}  pending\n" in output


def test_show_without_heartbeat_or_links():
    task = TaskFactory(failed=True, retries=2, next_retry_time=timezone.now())
    fields = shown(run("show", str(task.id)))
    assert fields["heartbeat age"] == "-"
    assert fields["dependencies"] == "-"
    assert fields["dependents"] == "-"
    assert fields["error"] == "RuntimeError: boom"
    assert fields["retries"] == "2"
    assert fields["next retry"] == task.next_retry_time.isoformat(timespec="seconds")


@pytest.mark.parametrize("command", ["show", "cancel"])
@pytest.mark.parametrize(
    "task_id, message",
    [
        ("not-a-uuid", r"^not a task id: 'not-a-uuid' \(expected a UUID\)$"),
        (str(uuid.UUID(int=9)), r"^task does not exist: 0{8}-0{4}-0{4}-0{4}-0{11}9$"),
    ],
)
def test_bad_ids_are_reported(command, task_id, message):
    with pytest.raises(CommandError, match=message):
        run(command, task_id)


# cancel


def test_cancel_cancels_a_cancellable_task_and_its_dependents():
    task = TaskFactory(type="diagnostics.sleep")
    child = TaskFactory(dependencies_left=1)
    child.dependencies.add(task)

    assert run("cancel", str(task.id)) == f"canceled task {task.id}\n"
    task.refresh_from_db()
    child.refresh_from_db()
    assert (task.status, task.cancel_attempted) == (Task.Status.CANCELED, True)
    assert child.status == Task.Status.CANCELED


def test_cancel_of_a_finished_task_says_so():
    task = TaskFactory(type="diagnostics.sleep", failed=True)
    assert run("cancel", str(task.id)) == f"task {task.id} had already finished (failed); marked cancel_attempted\n"
    task.refresh_from_db()
    assert (task.status, task.cancel_attempted) == (Task.Status.FAILED, True)


def test_cancel_refuses_a_type_that_is_not_cancellable():
    task = TaskFactory(type="diagnostics.noop")
    with pytest.raises(CommandError, match=r"not cancellable: tasks of type 'diagnostics.noop' cannot be canceled"):
        run("cancel", str(task.id))
    task.refresh_from_db()
    assert (task.status, task.cancel_attempted) == (Task.Status.PENDING, False)


def test_enqueued_task_can_be_shown_and_canceled_through_the_client():
    task_id = client.enqueue("diagnostics.sleep", {"seconds": 1})
    assert shown(run("show", str(task_id)))["status"] == "pending"
    run("cancel", str(task_id))
    assert shown(run("show", str(task_id)))["status"] == "canceled"


# the real command line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([b"tasks", b"show", b"not-a-uuid"], "not a task id: 'not-a-uuid'"),
        ([b"tasks", b"show", str(uuid.UUID(int=9)).encode()], "task does not exist"),
        ([b"tasks", b"list", b"--limit", b"99999999999999999999"], "--limit must be from 1 to 100000"),
        ([b"tasks", b"list", b"--type", b"\xff"], "--type is not valid text: '\\udcff'"),
        ([b"tasks", b"enqueue", b"diagnostics.noop", b"--org", b"a\xff"], "org_id is not storable text"),
        ([b"tasks", b"enqueue", b"diagnostics.noop", b"--priority", b"9" * 30], "priority must be an integer"),
        ([b"runworkers", b"--grace", b"inf"], "--grace must be a number of seconds above 0, at most a year: inf"),
        ([b"runworkers", b"--grace", b"nan"], "--grace must be a number of seconds above 0, at most a year: nan"),
        ([b"runworkers", b"--grace", b"0"], "--grace must be a number of seconds above 0, at most a year: 0.0"),
        ([b"runworkers", b"--grace", b"1e300"], "--grace must be a number of seconds above 0, at most a year: 1e+300"),
        ([b"runworkers", b"--types", b"\xff"], "unknown task type: '\\udcff'"),
    ],
)
def test_command_line_error_is_one_line_without_traceback_and_writes_nothing(args, message):
    before = Task.objects.count()
    assert_one_line_command_error([*args], message)
    assert Task.objects.count() == before
