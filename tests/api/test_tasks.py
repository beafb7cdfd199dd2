"""`tasks/`: the caller's tasks and those of Red Hat (-1) and Community (-2), which every
organisation sees and none cancels."""

import datetime

import psycopg
import pytest
from django.utils import timezone
from rest_framework import serializers

from contentsources.api.identity import Caller
from contentsources.api.tasks import TaskSerializer, tasks_of
from repositories.services import DELETE_SNAPSHOTS, INTROSPECT, SNAPSHOT
from tasks import queue
from tasks.models import Task, TaskDependency
from tests.api.conftest import API, client_of
from tests.api.factories import ORG_A, ORG_B, ConfigurationFactory, RepositoryTaskFactory, TaskFactory
from tests.api.handlers import RETRIED
from tests.helpers import database_url

TASK_FIELDS = {
    "uuid",
    "status",
    "created_at",
    "ended_at",
    "error",
    "org_id",
    "type",
    "object_type",
    "object_uuid",
    "object_name",
    "dependencies",
    "dependents",
}


def uuids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [item["uuid"] for item in response.json()["data"]]


def ago(minutes: float) -> datetime.datetime:
    return timezone.now() - datetime.timedelta(minutes=minutes)


# List


def test_list_shows_the_caller_s_red_hat_s_and_community_s_tasks_newest_first(api):
    mine = TaskFactory(org_id=ORG_A, queued_at=ago(3))
    red_hat = TaskFactory(org_id="-1", queued_at=ago(2))
    community = TaskFactory(org_id="-2", queued_at=ago(1))
    TaskFactory(org_id=ORG_B)
    TaskFactory(org_id="-3")
    TaskFactory(org_id=None)

    response = api.get(f"{API}tasks/")

    assert uuids(response) == [str(community.id), str(red_hat.id), str(mine.id)]
    assert response.json()["meta"] == {"count": 3, "limit": 100, "offset": 0}


def test_each_task_says_what_it_is_about_and_what_it_waits_for(api):
    configuration = ConfigurationFactory(name="BaseOS")
    parent = RepositoryTaskFactory(configuration=configuration, queued_at=ago(2), failed=True)
    child = RepositoryTaskFactory(configuration=configuration, type=SNAPSHOT, queued_at=ago(1), dependencies_left=1)
    TaskDependency.objects.create(task=child, dependency=parent)

    data = api.get(f"{API}tasks/").json()["data"]

    assert set(data[0]) == TASK_FIELDS
    assert data[0] == {
        "uuid": str(child.id),
        "status": "pending",
        "created_at": child.queued_at.isoformat().replace("+00:00", "Z"),
        "ended_at": None,
        "error": None,
        "org_id": ORG_A,
        "type": "snapshot",
        "object_type": "repository",
        "object_uuid": str(configuration.uuid),
        "object_name": "BaseOS",
        "dependencies": [str(parent.id)],
        "dependents": [],
    }
    assert (data[1]["status"], data[1]["error"], data[1]["dependents"]) == (
        "failed",
        "RuntimeError: boom",
        [str(child.id)],
    )
    assert data[1]["ended_at"] == parent.finished_at.isoformat().replace("+00:00", "Z")


def test_a_task_about_nothing_has_no_object(api):
    TaskFactory(org_id=ORG_A)

    [item] = api.get(f"{API}tasks/").json()["data"]

    assert (item["object_type"], item["object_uuid"], item["object_name"]) == (None, None, None)


def test_a_task_of_a_repository_several_organisations_use_is_listed_once_with_the_caller_s_name(api):
    mine = ConfigurationFactory(name="mine")
    ConfigurationFactory(org_id="-1", name="Red Hat's", repository=mine.repository)
    ConfigurationFactory(org_id=ORG_B, name="theirs", repository=mine.repository)
    task = RepositoryTaskFactory(configuration=mine)

    [item] = api.get(f"{API}tasks/").json()["data"]

    assert item["uuid"] == str(task.id)
    assert (item["object_uuid"], item["object_name"]) == (str(mine.uuid), "mine")


def test_tasks_of_a_deleted_repository_stay_visible_its_delete_task_too(api):
    configuration = ConfigurationFactory(name="gone")
    introspect = RepositoryTaskFactory(
        configuration=configuration, queued_at=ago(1), unique_key=f"introspect:{configuration.uuid}"
    )
    assert api.delete(f"{API}repositories/{configuration.uuid}/").status_code == 204
    delete = Task.objects.get(type=DELETE_SNAPSHOTS)

    data = api.get(f"{API}tasks/").json()["data"]

    assert [(item["uuid"], item["status"]) for item in data] == [
        (str(delete.id), "pending"),
        (str(introspect.id), "canceled"),
    ]
    assert {item["object_name"] for item in data} == {"gone"}
    assert api.get(f"{API}tasks/{delete.id}/").status_code == 200


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=pending", ["pending"]),
        ("status=failed,completed", ["completed", "failed"]),
        ("status=failed, completed,", ["completed", "failed"]),
        ("status=running,canceled", []),
        ("type=snapshot", ["completed"]),
        ("type=introspect&status=failed", ["failed"]),
        ("type=nothing", []),
    ],
)
def test_list_filters_by_status_and_type(api, query, expected):
    configuration = ConfigurationFactory()
    RepositoryTaskFactory(configuration=configuration, queued_at=ago(3))
    RepositoryTaskFactory(configuration=configuration, queued_at=ago(2), failed=True)
    RepositoryTaskFactory(
        configuration=configuration, type=SNAPSHOT, queued_at=ago(1), failed=True, status="completed", error=None
    )

    data = api.get(f"{API}tasks/?{query}").json()["data"]

    assert sorted(item["status"] for item in data) == expected


def test_list_filters_by_repository(api, other):
    mine, also_mine = ConfigurationFactory(), ConfigurationFactory()
    theirs = ConfigurationFactory(org_id=ORG_B, repository=mine.repository)
    task = RepositoryTaskFactory(configuration=mine)
    RepositoryTaskFactory(configuration=also_mine)
    their_task = RepositoryTaskFactory(configuration=theirs)  # about the same repository
    red_hat = ConfigurationFactory(org_id="-1", repository=mine.repository)
    red_hat_task = RepositoryTaskFactory(configuration=red_hat, queued_at=ago(1))

    assert uuids(api.get(f"{API}tasks/?repository_uuid={mine.uuid}")) == [str(task.id), str(red_hat_task.id)]
    assert uuids(other.get(f"{API}tasks/?repository_uuid={theirs.uuid}")) == [str(their_task.id), str(red_hat_task.id)]
    # Red Hat's repository, as its tasks name it: the tasks about it the caller sees.
    assert uuids(api.get(f"{API}tasks/?repository_uuid={red_hat.uuid}")) == [str(task.id), str(red_hat_task.id)]
    # Another organisation's repository, or none: no tasks.
    assert uuids(api.get(f"{API}tasks/?repository_uuid={theirs.uuid}")) == []
    assert uuids(api.get(f"{API}tasks/?repository_uuid=00000000-0000-0000-0000-000000000000")) == []


def test_each_task_is_shown_as_drf_s_fields_would_show_it(api, settings):
    """TaskSerializer writes its fields in one step; DRF's way, field by field, agrees."""
    configuration = ConfigurationFactory(name="r")
    parent = RepositoryTaskFactory(configuration=configuration, failed=True)
    child = RepositoryTaskFactory(configuration=configuration, type=SNAPSHOT, running=True)
    TaskDependency.objects.create(task=child, dependency=parent)
    TaskFactory(org_id="-1", account_id=None, object_type=None)
    caller = Caller(org_id=ORG_A, account_number="", user="")

    for zone in ("UTC", "Europe/Prague"):
        settings.TIME_ZONE = zone
        rows = list(tasks_of(caller))
        assert len(rows) == 3
        for row in rows:
            fast = TaskSerializer(row).data
            assert fast == serializers.Serializer.to_representation(TaskSerializer(), row), zone


# Retrieve


def test_retrieve_answers_the_task(api):
    configuration = ConfigurationFactory(name="r")
    task = RepositoryTaskFactory(configuration=configuration, running=True)
    red_hat = TaskFactory(org_id="-1")

    body = api.get(f"{API}tasks/{task.id}/").json()

    assert set(body) == TASK_FIELDS
    assert (body["uuid"], body["status"], body["object_name"]) == (str(task.id), "running", "r")
    assert api.get(f"{API}tasks/{red_hat.id}/").json()["org_id"] == "-1"


def test_an_unknown_task_is_a_404(api):
    response = api.get(f"{API}tasks/00000000-0000-0000-0000-000000000001/")

    assert response.status_code == 404
    assert response.json()["errors"][0]["detail"] == "task 00000000-0000-0000-0000-000000000001 not found"


# Cancel


def cancel(api, task):
    return api.post(f"{API}tasks/{task.id}/cancel/")


@pytest.mark.parametrize("state", ["pending", "running"])
def test_cancel_a_pending_or_running_task(api, state):
    configuration = ConfigurationFactory()
    task = RepositoryTaskFactory(configuration=configuration, running=state == "running")
    dependent = RepositoryTaskFactory(configuration=configuration, type=SNAPSHOT, dependencies_left=1)
    TaskDependency.objects.create(task=dependent, dependency=task)

    response = cancel(api, task)

    assert response.status_code == 204 and response.content == b""
    task.refresh_from_db()
    dependent.refresh_from_db()
    assert (task.status, task.error, task.cancel_attempted) == ("canceled", "task canceled", True)
    assert dependent.status == "canceled"


def test_cancel_a_failed_task_waiting_for_its_retry_stops_the_retry(api):
    task = TaskFactory(org_id=ORG_A, type=RETRIED, failed=True, next_retry_time=ago(1))

    response = cancel(api, task)

    assert response.status_code == 204
    task.refresh_from_db()
    assert (task.status, task.next_retry_time, task.cancel_attempted) == ("failed", None, True)
    assert queue.retry_failed() == []  # it is not retried
    task.refresh_from_db()
    assert (task.status, task.retries) == ("failed", 0)


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"failed": True, "status": "completed", "error": None}, "completed"),
        ({"status": "canceled", "error": "task canceled"}, "canceled"),
        ({"failed": True}, "failed"),  # for good: no retry to wait for
    ],
    ids=["completed", "canceled", "failed"],
)
def test_cancel_a_task_that_has_ended_is_a_409(api, fields, status):
    task = TaskFactory(org_id=ORG_A, type="diagnostics.sleep", **fields)

    response = cancel(api, task)

    assert response.status_code == 409
    assert response.json()["errors"][0]["detail"] == f"task {task.id} is already {status}"
    task.refresh_from_db()
    assert (task.status, task.cancel_attempted) == (status, False)


@pytest.mark.parametrize("status", ["pending", "completed"])
def test_cancel_a_task_of_a_type_that_cannot_be_is_a_400(api, status):
    task = TaskFactory(org_id=ORG_A, type="diagnostics.noop", status=status, failed=status == "completed", error=None)

    response = cancel(api, task)

    assert response.status_code == 400
    assert response.json()["errors"][0]["detail"] == "tasks of type 'diagnostics.noop' cannot be canceled"
    task.refresh_from_db()
    assert (task.status, task.cancel_attempted) == (status, False)


def test_cancel_a_task_of_an_unknown_type_is_a_400(api):
    task = TaskFactory(org_id=ORG_A, type="retired.type")

    assert cancel(api, task).json()["errors"][0]["detail"] == "tasks of type 'retired.type' cannot be canceled"


@pytest.mark.parametrize("org_id", ["-1", "-2"])
def test_nobody_cancels_red_hat_s_or_community_s_tasks(api, org_id):
    task = TaskFactory(org_id=org_id, type=INTROSPECT)

    response = cancel(api, task)

    assert response.status_code == 400
    assert response.json()["errors"][0]["detail"] == "Red Hat and Community tasks cannot be canceled"
    task.refresh_from_db()
    assert (task.status, task.cancel_attempted) == ("pending", False)


def test_cancel_an_unknown_task_is_a_404(api):
    response = api.post(f"{API}tasks/00000000-0000-0000-0000-000000000001/cancel/")

    assert response.status_code == 404
    assert response.json()["errors"][0]["detail"] == "task 00000000-0000-0000-0000-000000000001 not found"


def test_the_schema_documents_the_cancel_endpoint(api):
    paths = api.get(f"{API}openapi.json").json()["paths"]

    operation = paths["/api/content-sources/v1/tasks/{uuid}/cancel/"]["post"]
    assert operation["operationId"] == "cancelTask"
    assert set(operation["responses"]) >= {"204", "400", "404", "409"}


def test_v1_0_serves_the_same_api(api):
    task = TaskFactory(org_id=ORG_A)

    response = api.get(f"/api/content-sources/v1.0/tasks/{task.id}/")

    assert response.status_code == 200
    assert response.json() == api.get(f"{API}tasks/{task.id}/").json()
    assert not any("/v1.0/" in path for path in api.get(f"{API}openapi.json").json()["paths"])


def test_cancel_a_task_another_transaction_holds_is_a_409_to_retry_and_changes_nothing(transactional_db, monkeypatch):
    api = client_of(ORG_A)
    task = RepositoryTaskFactory(configuration=ConfigurationFactory())
    monkeypatch.setattr(queue, "CANCEL_PATIENCE", 0.2)
    with psycopg.connect(database_url(), autocommit=True) as holder, holder.transaction():
        holder.execute("SELECT 1 FROM tasks WHERE id = %s FOR UPDATE", [task.id])

        response = cancel(api, task)

    assert response.status_code == 409 and response["Retry-After"] == "1"
    detail = response.json()["errors"][0]["detail"]
    assert detail == f"task {task.id} is held by another transaction; nothing was changed, try again"
    task.refresh_from_db()
    assert (task.status, task.cancel_attempted) == ("pending", False)
    assert cancel(api, task).status_code == 204  # once the holder has committed


def test_a_repository_s_tasks_are_still_found_after_its_url_changed(api):
    created = api.post(f"{API}repositories/", {"name": "r", "url": "https://old.example/r/"}, format="json").json()
    [first] = Task.objects.all()
    queue.cancel(first.id)  # so that the new URL's introspection can be queued

    changed = api.patch(f"{API}repositories/{created['uuid']}/", {"url": "https://new.example/r/"}, format="json")

    assert changed.status_code == 200, changed.content
    second = Task.objects.exclude(id=first.id).get()
    listed = api.get(f"{API}tasks/?repository_uuid={created['uuid']}").json()["data"]
    assert [item["uuid"] for item in listed] == [str(second.id), str(first.id)]
    assert {(item["object_uuid"], item["object_name"]) for item in listed} == {(created["uuid"], "r")}


def test_the_admin_shows_a_task_s_object_as_the_api_does(api, admin_client):
    created = api.post(f"{API}repositories/", {"name": "r", "url": "https://a.example/r/"}, format="json").json()
    [item] = api.get(f"{API}tasks/").json()["data"]

    assert item["object_uuid"] == created["uuid"]
    changelist = admin_client.get("/admin/tasks/task/", {"q": item["uuid"]}).content.decode()
    assert f"repository {created['uuid']}" in changelist
    assert created["uuid"] in admin_client.get(f"/admin/tasks/task/{item['uuid']}/change/").content.decode()
