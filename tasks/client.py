"""Enqueue and cancel tasks: the API of the task framework for the rest of the project."""

import builtins
import logging
import uuid
from collections.abc import Iterable

from tasks import queue, registry
from tasks.exceptions import DependencyNotFound, InvalidTask, TaskNotCancellable, TaskNotFound, UnknownTaskType
from tasks.log import log_on_commit
from tasks.models import Task
from tasks.payloads import is_storable_text, serialize_payload

logger = logging.getLogger(__name__)

PRIORITY_RANGE = (-(2**31), 2**31 - 1)  # the column is a 32-bit integer
TEXT_FIELD_LIMIT = 255


def enqueue(
    type: str,
    payload: object = None,
    *,
    dependencies: Iterable[uuid.UUID | str] = (),
    priority: int = 0,
    org_id: str | None = None,
    account_id: str | None = None,
    object_uuid: uuid.UUID | str | None = None,
    object_type: str | None = None,
    request_id: str | None = None,
    unique_key: str | None = None,
) -> uuid.UUID:
    """Queue up a task and return its id.

    Inside a transaction, the task commits (and wakes the workers) with the caller's writes.
    With a `unique_key`, at most one pending or running task holds that key: enqueueing a
    second one raises TaskAlreadyQueued, whose `task_id` is the task that holds it.
    """
    [task_id] = _enqueue(
        type,
        [payload],
        dependencies=dependencies,
        priority=priority,
        org_id=org_id,
        account_id=account_id,
        object_uuid=object_uuid,
        object_type=object_type,
        request_id=request_id,
        unique_key=unique_key,
    )
    return task_id


def enqueue_many(
    type: str,
    payloads: Iterable[object],
    *,
    dependencies: Iterable[uuid.UUID | str] = (),
    priority: int = 0,
    org_id: str | None = None,
    account_id: str | None = None,
    object_uuid: uuid.UUID | str | None = None,
    object_type: str | None = None,
    request_id: str | None = None,
) -> list[uuid.UUID]:
    """Queue up one task per payload, all alike but for the payload, in one transaction;
    return their ids in the order of the payloads. Nothing is queued if one is invalid."""
    return _enqueue(
        type,
        payloads,
        dependencies=dependencies,
        priority=priority,
        org_id=org_id,
        account_id=account_id,
        object_uuid=object_uuid,
        object_type=object_type,
        request_id=request_id,
        unique_key=None,
    )


def _enqueue(
    type: str,
    payloads: Iterable[object],
    *,
    dependencies: Iterable[uuid.UUID | str],
    priority: int,
    org_id: str | None,
    account_id: str | None,
    object_uuid: uuid.UUID | str | None,
    object_type: str | None,
    request_id: str | None,
    unique_key: str | None,
) -> list[uuid.UUID]:
    if not isinstance(type, str):
        raise UnknownTaskType(f"a task type is a string, not {builtins.type(type).__name__}")
    registry.get(type)  # raises UnknownTaskType
    if isinstance(dependencies, str | bytes | uuid.UUID):
        raise InvalidTask("dependencies must be a list of task ids, not a single one")
    payloads_json = [serialize_payload(payload) for payload in payloads]
    dependency_ids = []
    for dependency in dependencies:
        try:
            dependency_ids.append(uuid.UUID(str(dependency)))
        except ValueError:
            raise DependencyNotFound(f"dependency is not a task id: {dependency!r}") from None
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not PRIORITY_RANGE[0] <= priority <= PRIORITY_RANGE[1]
    ):
        raise InvalidTask(f"priority must be an integer from {PRIORITY_RANGE[0]} to {PRIORITY_RANGE[1]}: {priority!r}")
    texts = {
        "org_id": org_id,
        "account_id": account_id,
        "object_type": object_type,
        "request_id": request_id,
        "unique_key": unique_key,
    }
    for name, value in texts.items():
        _check_text(name, value)
    if not payloads_json:
        return []
    task_ids, status = queue.enqueue(
        type=type,
        payloads_json=payloads_json,
        dependencies=dependency_ids,
        priority=priority,
        org_id=org_id,
        account_id=account_id,
        object_uuid=_object_uuid(object_uuid),
        object_type=object_type,
        request_id=request_id,
        unique_key=unique_key,
    )
    if len(task_ids) == 1:
        log_on_commit(
            logger,
            "task enqueued task_id=%s type=%s request_id=%s status=%s",
            task_ids[0],
            type,
            request_id or "-",
            status,
            task={"task_id": str(task_ids[0]), "type": type, "org_id": org_id, "request_id": request_id},
        )
    else:
        log_on_commit(
            logger,
            "tasks enqueued count=%d first_task_id=%s type=%s request_id=%s status=%s",
            len(task_ids),
            task_ids[0],
            type,
            request_id or "-",
            status,
        )
    return task_ids


def _check_text(name: str, value: object) -> None:
    """A text attribute must be storable in its column: a string of UTF-8 text, no NUL, short."""
    if value is None:
        return
    if not isinstance(value, str):
        raise InvalidTask(f"{name} must be a string, not {type(value).__name__}")
    if not is_storable_text(value):
        raise InvalidTask(f"{name} is not storable text: {value!r} (not UTF-8, or holds a NUL)")
    if len(value) > TEXT_FIELD_LIMIT:
        raise InvalidTask(f"{name} is longer than {TEXT_FIELD_LIMIT} characters")


def _object_uuid(value: object) -> uuid.UUID | None:
    if value is None or isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InvalidTask(f"object_uuid is not a UUID: {value!r}") from None


def cancel(task_id: uuid.UUID | str) -> str:
    """Cancel a task of a cancellable type, and every unfinished task that depends on it.

    Returns the status the task had: a task that had already finished keeps its status (and
    a failed one loses its pending retry).
    """
    try:
        task_id = uuid.UUID(str(task_id))
    except ValueError:
        raise TaskNotFound(f"not a task id: {task_id!r}") from None
    task = Task.objects.filter(pk=task_id).values("type", "org_id", "request_id").first()
    if task is None:
        raise TaskNotFound(f"task does not exist: {task_id}")
    handler = registry.find(task["type"])
    if handler is None or not handler.cancellable:
        raise TaskNotCancellable(f"task not cancellable: tasks of type {task['type']!r} cannot be canceled")
    previous = queue.cancel(task_id)
    # The line is the cancelling request's (its request_id added by the formatter); the task's
    # own request is the one that enqueued it.
    log_on_commit(
        logger,
        "task canceled task_id=%s type=%s task_request_id=%s previous_status=%s",
        task_id,
        task["type"],
        task["request_id"] or "-",
        previous,
        task={"task_id": str(task_id), "type": task["type"], "org_id": task["org_id"]},
    )
    return previous
