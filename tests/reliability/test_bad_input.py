"""Scenario 7: bad input through tasks.client. Each is a clear exception of the task framework
at enqueue, and nothing is half-written; a failing handler's unstorable error text is cleaned."""

import math
import random
import uuid

import pytest

from tasks import client
from tasks.conf import ERROR_LIMIT
from tasks.exceptions import DependencyNotFound, InvalidPayload, UnknownTaskType
from tasks.models import Task, TaskDependency
from tests.helpers import wait_until


@pytest.fixture
def nothing_written(transactional_db):
    """Assert at the end of the test that the tables hold what they held at its start."""
    before = (Task.objects.count(), TaskDependency.objects.count())
    yield
    assert (Task.objects.count(), TaskDependency.objects.count()) == before


def circular() -> dict:
    payload = {}
    payload["self"] = payload
    return payload


def nested(depth: int) -> list:
    payload = []
    for _ in range(depth):
        payload = [payload]
    return payload


def test_an_unknown_type_is_refused(nothing_written):
    with pytest.raises(UnknownTaskType, match="no.such.type"):
        client.enqueue("no.such.type", {})


@pytest.mark.parametrize(
    "payload",
    [object(), {1, 2}, b"bytes", math.nan, math.inf, circular(), {("a", "tuple"): "key"}, 10**5000],
    ids=["object", "set", "bytes", "nan", "inf", "circular", "tuple-key", "huge-int"],
)
def test_a_payload_that_is_not_json_is_refused(nothing_written, payload):
    with pytest.raises(InvalidPayload, match="not JSON-serialisable"):
        client.enqueue("reliability.work", payload)


def test_a_payload_nested_too_deep_for_json_is_refused(nothing_written):
    with pytest.raises(InvalidPayload):
        client.enqueue("reliability.work", nested(100_000))


@pytest.mark.parametrize(
    "payload", [{"text": "a\x00b"}, {"key\x00": 1}, ["\x00"]], ids=["in-a-value", "in-a-key", "in-a-list"]
)
def test_a_payload_with_a_nul_character_is_refused(nothing_written, payload):
    with pytest.raises(InvalidPayload, match="NUL"):
        client.enqueue("reliability.work", payload)


@pytest.mark.parametrize("payload", [{"text": "\ud800"}, {"\udfff": 1}], ids=["in-a-value", "in-a-key"])
def test_a_payload_with_a_lone_surrogate_is_refused(nothing_written, payload):
    """Not UTF-8: PostgreSQL would refuse it with a bare database error."""
    with pytest.raises(InvalidPayload):
        client.enqueue("reliability.work", payload)


def test_a_payload_with_a_backslash_before_u0000_is_stored_as_it_is(db):
    """Six harmless characters (a Windows path, an escaped JSON text): not a NUL."""
    payload = {"path": "C:\\u0000\\dir"}
    task_id = client.enqueue("reliability.work", payload)
    assert Task.objects.get(pk=task_id).payload == payload


def test_a_payload_over_the_limit_is_refused_and_one_at_the_limit_stored(db, settings):
    settings.TASKING = {**settings.TASKING, "PAYLOAD_LIMIT": 1000}
    at_limit = {"data": "x" * (1000 - len('{"data": ""}'))}
    before = Task.objects.count()
    with pytest.raises(InvalidPayload, match="over the limit of 1000 .TASKING_PAYLOAD_LIMIT."):
        client.enqueue("reliability.work", {"data": at_limit["data"] + "x"})
    assert Task.objects.count() == before
    assert Task.objects.get(pk=client.enqueue("reliability.work", at_limit)).payload == at_limit


def test_a_payload_far_over_the_default_limit_is_refused(nothing_written):
    with pytest.raises(InvalidPayload, match="TASKING_PAYLOAD_LIMIT"):
        client.enqueue("reliability.work", {"data": "x" * (16 * 1024 * 1024)})


def test_one_bad_payload_in_a_batch_writes_none_of_it(nothing_written):
    with pytest.raises(InvalidPayload):
        client.enqueue_many("reliability.work", [{"n": 1}, {"n": object()}, {"n": 3}])


def test_an_unknown_dependency_is_refused_and_nothing_is_written(db):
    known = client.enqueue("reliability.work")
    before = (Task.objects.count(), TaskDependency.objects.count())
    missing = uuid.uuid4()
    with pytest.raises(DependencyNotFound, match=str(missing)):
        client.enqueue("reliability.work", dependencies=[known, missing])
    with pytest.raises(DependencyNotFound, match="not a task id"):
        client.enqueue("reliability.work", dependencies=[known, "not-a-uuid"])
    assert (Task.objects.count(), TaskDependency.objects.count()) == before


def test_no_dependency_cycle_can_be_formed(db):
    """A new task's id is made at enqueue and its dependencies must already exist, so every
    edge points at an older task: ids handed out later, or never, are refused."""
    existing, future = [], [uuid.uuid4() for _ in range(50)]
    random.seed(3)
    for _ in range(300):
        wanted = random.sample(existing, min(len(existing), random.randint(0, 3)))
        if random.random() < 0.2:
            wanted.append(random.choice(future))
            with pytest.raises(DependencyNotFound):
                client.enqueue("reliability.work", dependencies=wanted)
        else:
            existing.append(client.enqueue("reliability.work", dependencies=wanted))
    order = {task_id: n for n, task_id in enumerate(existing)}
    edges = TaskDependency.objects.values_list("task_id", "dependency_id")
    assert edges and all(order[dependency] < order[task] for task, dependency in edges)
    assert not Task.objects.filter(pk__in=future).exists()


def test_an_unstorable_error_text_is_cleaned_and_the_task_fails(fleet, summary):
    """NUL characters and lone surrogates cannot be stored in PostgreSQL text; the task must
    end failed with the rest of its error, not stay running because the write failed."""
    pools = fleet("--workers", "2")
    pools.start()
    nul = client.enqueue("reliability.fail", {"message": "before NUL", "codepoints": [0, ord("!")]})
    surrogate = client.enqueue("reliability.fail", {"message": "lone surrogate", "codepoints": [0xD800]})
    long = client.enqueue("reliability.fail", {"message": "x" * (3 * ERROR_LIMIT), "codepoints": [0xDFFF]})
    ids = [nul, surrogate, long]
    wait_until(
        lambda: Task.objects.filter(pk__in=ids, status=Task.Status.FAILED).count() == 3,
        message="the three tasks to fail",
    )
    errors = dict(Task.objects.filter(pk__in=ids).values_list("id", "error"))
    summary("bad error texts", tasks=3, failed=3, unexpected_exits=len(pools.exits))
    assert errors[nul] == "RuntimeError: before NUL!"
    assert errors[surrogate] == "RuntimeError: lone surrogate?"
    assert errors[long] == ("RuntimeError: " + "x" * ERROR_LIMIT)[:ERROR_LIMIT]
    assert pools.exits == []
