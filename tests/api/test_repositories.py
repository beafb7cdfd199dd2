"""`repositories/`: an organisation's repositories, what their tasks found, and the tasks that
introspect and snapshot them."""

import datetime

import pytest
from django.utils import timezone

from repositories.models import Repository, RepositoryConfiguration
from repositories.services import DELETE_SNAPSHOTS, INTROSPECT, SNAPSHOT
from tasks.models import Task
from tests.api.conftest import API
from tests.api.factories import (
    ORG_A,
    ORG_B,
    ConfigurationFactory,
    RepositoryFactory,
    RepositoryTaskFactory,
    SnapshotFactory,
)

REPOSITORY_FIELDS = {
    "uuid",
    "name",
    "url",
    "org_id",
    "account_id",
    "distribution_versions",
    "distribution_arch",
    "gpg_key",
    "metadata_verification",
    "module_hotfixes",
    "snapshot",
    "status",
    "package_count",
    "last_introspection_time",
    "last_introspection_error",
    "failed_introspections_count",
    "last_snapshot",
    "last_snapshot_task",
    "created_at",
    "updated_at",
}
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
SNAPSHOT_FIELDS = {"uuid", "created_at", "url", "content_counts", "added_counts", "removed_counts"}


def create(api, **fields):
    return api.post(f"{API}repositories/", fields, format="json")


def names(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [item["name"] for item in response.json()["data"]]


# Create


def test_create_normalises_the_url_and_queues_the_introspection(api):
    response = create(api, name="  BaseOS  9 ", url="HTTPS://Mirror.Example.COM:443/rhel/9/baseos#top")

    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == REPOSITORY_FIELDS
    assert body["name"] == "BaseOS 9"
    assert body["url"] == "https://mirror.example.com/rhel/9/baseos/"
    assert body["org_id"] == ORG_A
    assert body["status"] == "Pending" and body["package_count"] == 0
    assert body["snapshot"] is False and body["last_snapshot"] is None and body["last_snapshot_task"] is None
    [task] = Task.objects.all()
    assert (task.type, task.org_id, task.object_type) == (INTROSPECT, ORG_A, "repository")
    configuration = RepositoryConfiguration.objects.get(uuid=body["uuid"])
    assert task.object_uuid == configuration.uuid


def test_create_with_snapshots_queues_the_snapshot_after_the_introspection(api):
    response = create(
        api,
        name="r",
        url="https://a.example/r/",
        snapshot=True,
        distribution_versions=["9", "8", "9"],
        distribution_arch="x86_64",
        gpg_key="-----BEGIN PGP PUBLIC KEY BLOCK-----\n...\n",
        metadata_verification=True,
        module_hotfixes=True,
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["distribution_versions"] == ["8", "9"]
    assert (body["distribution_arch"], body["metadata_verification"], body["module_hotfixes"]) == ("x86_64", True, True)
    introspect = Task.objects.get(type=INTROSPECT)
    snapshot = Task.objects.get(type=SNAPSHOT)
    assert body["last_snapshot_task"]["uuid"] == str(snapshot.id)
    assert body["last_snapshot_task"]["status"] == "pending"
    assert list(snapshot.dependencies.all()) == [introspect]


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        ({"name": "taken", "url": "https://b.example/"}, "name: a repository named 'taken' already exists"),
        (
            {"name": "other", "url": "HTTPS://A.EXAMPLE/r"},
            "url: a repository with the URL https://a.example/r/ already exists",
        ),
    ],
    ids=["name", "url"],
)
def test_a_name_or_url_the_organisation_uses_is_a_400_naming_the_field(api, other, fields, detail):
    assert create(api, name="taken", url="https://a.example/r/").status_code == 201

    response = create(api, **fields)

    assert response.status_code == 400
    assert response.json()["errors"][0]["detail"] == detail
    assert RepositoryConfiguration.objects.filter(org_id=ORG_A).count() == 1
    # Another organisation may use both.
    assert create(other, name="taken", url="https://a.example/r/").status_code == 201


def test_a_deleted_repository_s_name_and_url_can_be_used_again(api):
    first = create(api, name="r", url="https://a.example/r/").json()
    assert api.delete(f"{API}repositories/{first['uuid']}/").status_code == 204

    assert create(api, name="r", url="https://a.example/r/").status_code == 201


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        (
            {"name": "r", "url": "mirror.example/r/"},
            "url: url must start with http:// or https://, not 'mirror.example/r/'",
        ),
        ({"name": "r", "url": "https:///r/"}, "url: url has no host"),
        ({"name": "   ", "url": "https://a/"}, "name: This field may not be blank."),
        ({"name": "a\x07b", "url": "https://a/"}, "name: name "),
        (
            {"name": "r", "url": "https://a/", "distribution_versions": [""]},
            "distribution_versions.0: This field may not be blank.",
        ),
        ({"name": "r", "url": "https://a/", "gpg_key": "\x07"}, "gpg_key: gpg_key must be text"),
        ({"name": "r", "url": "https://a/", "snapshot": "maybe"}, "snapshot: Must be a valid boolean."),
    ],
    ids=["scheme", "host", "blank-name", "unprintable-name", "blank-version", "gpg-key", "boolean"],
)
def test_invalid_input_is_a_400_naming_the_field(api, fields, detail):
    response = create(api, **fields)

    assert response.status_code == 400
    # The domain's own words may change; the field it names may not.
    [error] = response.json()["errors"]
    assert error["detail"].startswith(detail), error
    assert not RepositoryConfiguration.objects.exists() and not Task.objects.exists()


# Bulk create


def test_bulk_create_creates_all_in_order(api):
    response = api.post(
        f"{API}repositories/bulk_create/",
        [{"name": "b", "url": "https://b.example/"}, {"name": "a", "url": "https://a.example/", "snapshot": True}],
        format="json",
    )

    assert response.status_code == 201, response.content
    assert [item["name"] for item in response.json()] == ["b", "a"]
    assert set(response.json()[1]) == REPOSITORY_FIELDS
    assert Task.objects.filter(type=INTROSPECT).count() == 2 and Task.objects.filter(type=SNAPSHOT).count() == 1


@pytest.mark.parametrize(
    ("second", "detail"),
    [
        ({"name": "a", "url": "https://other.example/"}, "1.name: a repository named 'a' already exists"),
        (
            {"name": "b", "url": "https://A.example"},
            "1.url: a repository with the URL https://a.example/ already exists",
        ),
        ({"name": "b", "url": "gopher://b/"}, "1.url: url must start with http:// or https://, not 'gopher://b/'"),
        ({"name": "b"}, "1.url: This field is required."),
    ],
    ids=["duplicate-name", "duplicate-url", "bad-url", "missing-url"],
)
def test_bulk_create_is_all_or_nothing(api, second, detail):
    response = api.post(
        f"{API}repositories/bulk_create/", [{"name": "a", "url": "https://a.example/"}, second], format="json"
    )

    assert response.status_code == 400
    assert [error["detail"] for error in response.json()["errors"]] == [detail]
    assert not RepositoryConfiguration.objects.exists()
    assert not Task.objects.exists()


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ([], "give 1 to 100 repositories, not 0"),
        ({"name": "a", "url": "https://a/"}, 'Expected a list of items but got type "dict".'),
        (
            [{"name": f"r{n}", "url": f"https://a/{n}"} for n in range(101)],
            "give 1 to 100 repositories, not 101",
        ),
    ],
    ids=["empty", "not-a-list", "too-many"],
)
def test_bulk_create_needs_a_list_of_1_to_100(api, body, detail):
    response = api.post(f"{API}repositories/bulk_create/", body, format="json")

    assert response.status_code == 400
    assert [error["detail"] for error in response.json()["errors"]] == [detail]
    assert not RepositoryConfiguration.objects.exists()


# List, filters, ordering


def test_list_shows_the_organisation_s_live_repositories_by_name(api):
    ConfigurationFactory(name="b")
    ConfigurationFactory(name="a")
    ConfigurationFactory(name="c", org_id=ORG_B)
    ConfigurationFactory(name="d", deleted_at=timezone.now())

    response = api.get(f"{API}repositories/")

    assert names(response) == ["a", "b"]
    assert response.json()["meta"] == {"count": 2, "limit": 100, "offset": 0}
    assert set(response.json()["data"][0]) == REPOSITORY_FIELDS


@pytest.fixture
def three(db):
    return [
        ConfigurationFactory(
            name="AppStream", repository=RepositoryFactory(url="https://cdn.example/appstream/", package_count=30)
        ),
        ConfigurationFactory(
            name="BaseOS",
            repository=RepositoryFactory(
                url="https://cdn.example/baseos/", status=Repository.Status.INVALID, package_count=10
            ),
        ),
        ConfigurationFactory(
            name="EPEL",
            repository=RepositoryFactory(
                url="https://mirror.example/epel/", status=Repository.Status.PENDING, package_count=20
            ),
        ),
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("name=BaseOS", ["BaseOS"]),
        ("name=baseos", []),
        ("url=HTTPS://CDN.example/baseos", ["BaseOS"]),
        ("status=Valid", ["AppStream"]),
        ("status=Pending", ["EPEL"]),
        ("search=base", ["BaseOS"]),
        ("search=CDN.EXAMPLE", ["AppStream", "BaseOS"]),
        ("search=%25", []),
        ("search=cdn&status=Invalid", ["BaseOS"]),
        ("ordering=-name", ["EPEL", "BaseOS", "AppStream"]),
        ("ordering=url", ["AppStream", "BaseOS", "EPEL"]),
        ("ordering=-url", ["EPEL", "BaseOS", "AppStream"]),
        ("ordering=status", ["BaseOS", "EPEL", "AppStream"]),
        ("ordering=package_count", ["BaseOS", "EPEL", "AppStream"]),
        ("ordering=-package_count", ["AppStream", "EPEL", "BaseOS"]),
        ("ordering=created_at", ["AppStream", "BaseOS", "EPEL"]),
        ("ordering=-created_at", ["EPEL", "BaseOS", "AppStream"]),
    ],
)
def test_list_filters_and_orders(api, three, query, expected):
    assert names(api.get(f"{API}repositories/?{query}")) == expected


# Retrieve


def test_retrieve_shows_what_the_tasks_found(api):
    configuration = ConfigurationFactory(
        repository=RepositoryFactory(
            status=Repository.Status.INVALID,
            package_count=0,
            last_introspection_time=timezone.now(),
            last_introspection_error="HTTPNotFound: 404 from https://mirror.example.com/r/repodata/repomd.xml",
            failed_introspections_count=2,
        )
    )
    older = SnapshotFactory(repository_configuration=configuration)
    newest = SnapshotFactory(repository_configuration=configuration)
    task = RepositoryTaskFactory(configuration=configuration, type=SNAPSHOT, failed=True)
    configuration.last_snapshot, configuration.last_snapshot_task = newest, task
    configuration.save()

    body = api.get(f"{API}repositories/{configuration.uuid}/").json()

    assert body["status"] == "Invalid" and body["failed_introspections_count"] == 2
    assert body["last_introspection_error"].startswith("HTTPNotFound: 404")
    assert body["last_snapshot"]["uuid"] == str(newest.uuid) != str(older.uuid)
    assert body["last_snapshot"]["url"] == f"http://testserver/content/{ORG_A}/{newest.uuid}/"
    assert set(body["last_snapshot"]) == SNAPSHOT_FIELDS
    assert body["last_snapshot_task"] == {
        "uuid": str(task.id),
        "status": "failed",
        "type": "snapshot",
        "created_at": task.queued_at.isoformat().replace("+00:00", "Z"),
        "ended_at": task.finished_at.isoformat().replace("+00:00", "Z"),
        "error": "RuntimeError: boom",
    }


def test_an_unknown_or_deleted_repository_is_a_404(api):
    deleted = ConfigurationFactory(deleted_at=timezone.now())

    for uuid in (deleted.uuid, "00000000-0000-0000-0000-000000000000"):
        response = api.get(f"{API}repositories/{uuid}/")
        assert response.status_code == 404
        assert response.json()["errors"][0]["detail"] == f"repository {uuid} not found"


# Partial update


def test_partial_update_changes_only_the_given_fields(api):
    configuration = ConfigurationFactory(name="old", distribution_arch="x86_64", module_hotfixes=False)

    response = api.patch(
        f"{API}repositories/{configuration.uuid}/", {"name": " new ", "module_hotfixes": True}, format="json"
    )

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["name"], body["module_hotfixes"], body["distribution_arch"]) == ("new", True, "x86_64")
    assert not Task.objects.exists()  # nothing to introspect again


def test_a_new_url_cancels_the_running_introspection_and_queues_another(api):
    configuration = ConfigurationFactory(snapshot=False)
    running = RepositoryTaskFactory(
        configuration=configuration, running=True, unique_key=f"introspect:{configuration.uuid}"
    )

    response = api.patch(f"{API}repositories/{configuration.uuid}/", {"url": "https://new.example/r"}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["url"] == "https://new.example/r/"
    running.refresh_from_db()
    assert running.status == Task.Status.CANCELED
    fresh = Task.objects.get(type=INTROSPECT, status=Task.Status.PENDING)
    assert fresh.object_uuid == running.object_uuid == configuration.uuid


def test_turning_snapshots_on_queues_a_snapshot(api):
    configuration = ConfigurationFactory(snapshot=False)

    response = api.patch(f"{API}repositories/{configuration.uuid}/", {"snapshot": True}, format="json")

    assert response.status_code == 200
    task = Task.objects.get(type=SNAPSHOT)
    assert response.json()["last_snapshot_task"]["uuid"] == str(task.id)


def test_partial_update_to_a_name_in_use_is_a_400_naming_the_field(api):
    ConfigurationFactory(name="taken")
    configuration = ConfigurationFactory(name="mine")

    response = api.patch(f"{API}repositories/{configuration.uuid}/", {"name": "taken"}, format="json")

    assert response.status_code == 400
    assert response.json()["errors"][0]["detail"] == "name: a repository named 'taken' already exists"
    configuration.refresh_from_db()
    assert configuration.name == "mine"


def test_partial_update_to_a_url_in_use_is_a_400_naming_the_field(api):
    ConfigurationFactory(repository=RepositoryFactory(url="https://taken.example/"))
    configuration = ConfigurationFactory()

    response = api.patch(f"{API}repositories/{configuration.uuid}/", {"url": "https://TAKEN.example"}, format="json")

    assert response.status_code == 400
    assert (
        response.json()["errors"][0]["detail"] == "url: a repository with the URL https://taken.example/ already exists"
    )


# Delete


def test_delete_soft_deletes_cancels_and_queues_the_delete_task(api):
    configuration = ConfigurationFactory()
    pending = RepositoryTaskFactory(configuration=configuration, unique_key=f"introspect:{configuration.uuid}")

    response = api.delete(f"{API}repositories/{configuration.uuid}/", HTTP_X_RH_INSIGHTS_REQUEST_ID="delete-1")

    assert response.status_code == 204 and response.content == b""
    configuration.refresh_from_db()
    assert configuration.deleted_at is not None
    pending.refresh_from_db()
    assert pending.status == Task.Status.CANCELED
    delete = Task.objects.get(type=DELETE_SNAPSHOTS)
    assert (delete.status, delete.request_id, delete.org_id) == ("pending", "delete-1", ORG_A)
    assert delete.payload == {"repository_configuration_uuid": str(configuration.uuid)}
    assert api.get(f"{API}repositories/{configuration.uuid}/").status_code == 404
    assert api.delete(f"{API}repositories/{configuration.uuid}/").status_code == 404
    assert names(api.get(f"{API}repositories/")) == []


# Introspect and snapshot


def test_introspect_queues_and_answers_the_task(api):
    configuration = ConfigurationFactory(name="r")

    response = api.post(f"{API}repositories/{configuration.uuid}/introspect/")

    assert response.status_code == 201, response.content
    body = response.json()
    task = Task.objects.get()
    assert set(body) == TASK_FIELDS
    assert body["uuid"] == str(task.id)
    assert (body["type"], body["status"], body["org_id"]) == ("introspect", "pending", ORG_A)
    assert (body["object_type"], body["object_uuid"], body["object_name"]) == (
        "repository",
        str(configuration.uuid),
        "r",
    )


@pytest.mark.parametrize("action", ["introspect", "snapshot"])
def test_a_second_while_one_is_pending_or_running_is_a_409_naming_it(api, action):
    configuration = ConfigurationFactory()
    first = api.post(f"{API}repositories/{configuration.uuid}/{action}/").json()["uuid"]

    response = api.post(f"{API}repositories/{configuration.uuid}/{action}/")

    assert response.status_code == 409
    assert response.json()["errors"][0]["detail"] == f"task {first} is already pending or running"
    Task.objects.filter(id=first).update(
        status="running", started_at=timezone.now(), token="4c7ba3f6-38c3-4b2c-9bd6-2a8b76dbbd43"
    )
    assert api.post(f"{API}repositories/{configuration.uuid}/{action}/").status_code == 409
    Task.objects.filter(id=first).update(status="completed", finished_at=timezone.now())
    assert api.post(f"{API}repositories/{configuration.uuid}/{action}/").status_code == 201


def test_snapshot_records_the_last_snapshot_task(api):
    configuration = ConfigurationFactory(snapshot=True)

    task = api.post(f"{API}repositories/{configuration.uuid}/snapshot/").json()

    assert task["type"] == "snapshot"
    assert api.get(f"{API}repositories/{configuration.uuid}/").json()["last_snapshot_task"]["uuid"] == task["uuid"]


def test_snapshot_of_a_repository_without_snapshots_is_a_400(api):
    configuration = ConfigurationFactory(name="r", snapshot=False)

    response = api.post(f"{API}repositories/{configuration.uuid}/snapshot/")

    assert response.status_code == 400
    assert response.json()["errors"][0]["detail"] == "snapshots are not enabled for the repository 'r'"
    assert not Task.objects.exists()


# Snapshots


def test_snapshots_newest_first_with_their_served_url(api):
    configuration = ConfigurationFactory()
    now = timezone.now()
    snapshots = [SnapshotFactory(repository_configuration=configuration) for _ in range(3)]
    for age, snapshot in enumerate(reversed(snapshots)):
        snapshot.created_at = now - datetime.timedelta(days=age)
        snapshot.save()
    SnapshotFactory()  # another repository's

    response = api.get(f"{API}repositories/{configuration.uuid}/snapshots/?limit=2")

    assert response.status_code == 200
    body = response.json()
    assert [item["uuid"] for item in body["data"]] == [str(snapshots[2].uuid), str(snapshots[1].uuid)]
    assert body["meta"] == {"count": 3, "limit": 2, "offset": 0}
    item = body["data"][0]
    assert set(item) == SNAPSHOT_FIELDS
    assert item["url"] == f"http://testserver/content/{ORG_A}/{snapshots[2].uuid}/"
    assert (item["content_counts"], item["added_counts"], item["removed_counts"]) == (
        {"rpm": 3, "advisory": 2},
        {"rpm": 3, "advisory": 2},
        {},
    )
    assert body["links"]["next"] == f"{API}repositories/{configuration.uuid}/snapshots/?limit=2&offset=2"
