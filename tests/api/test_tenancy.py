"""Every query is scoped to the caller's organisation: another organisation's repository,
snapshot or task is a 404 (never a 403) on every endpoint, seen, changed or cancelled, and
is left as it was. Both ways: A against B's objects, B against A's."""

import pytest

from repositories.models import RepositoryConfiguration
from tasks.models import Task
from tests.api.conftest import API, client_of
from tests.api.factories import ORG_A, ORG_B, ConfigurationFactory, RepositoryTaskFactory, SnapshotFactory

ORGS = {"A": ORG_A, "B": ORG_B}

# (method, path, body): each endpoint that names one object.
REPOSITORY_ENDPOINTS = [
    ("get", "repositories/{repository}/", None),
    ("patch", "repositories/{repository}/", {"name": "taken over", "url": "https://evil.example/"}),
    ("delete", "repositories/{repository}/", None),
    ("post", "repositories/{repository}/introspect/", None),
    ("post", "repositories/{repository}/snapshot/", None),
    ("get", "repositories/{repository}/snapshots/", None),
]
TASK_ENDPOINTS = [
    ("get", "tasks/{task}/", None),
    ("post", "tasks/{task}/cancel/", None),
]


@pytest.fixture
def owned(db):
    """For each organisation: a repository with a snapshot and a pending task."""
    objects = {}
    for name, org_id in ORGS.items():
        configuration = ConfigurationFactory(org_id=org_id, name="same name", snapshot=True)
        SnapshotFactory(repository_configuration=configuration)
        task = RepositoryTaskFactory(configuration=configuration, type="snapshot")
        objects[name] = {"repository": configuration, "task": task}
    return objects


def state(objects) -> tuple:
    """What a caller could have changed of an organisation's objects."""
    configuration = RepositoryConfiguration.objects.select_related("repository").get(uuid=objects["repository"].uuid)
    task = Task.objects.get(id=objects["task"].id)
    return (
        configuration.name,
        configuration.repository.url,
        configuration.deleted_at,
        configuration.last_snapshot_task_id,
        task.status,
        task.cancel_attempted,
        Task.objects.filter(org_id=configuration.org_id).count(),
    )


@pytest.mark.parametrize(("caller", "owner"), [("A", "B"), ("B", "A")])
@pytest.mark.parametrize(("method", "path", "body"), REPOSITORY_ENDPOINTS + TASK_ENDPOINTS)
def test_another_organisation_s_object_is_a_404_and_stays_as_it_was(owned, caller, owner, method, path, body):
    target = owned[owner]
    before = state(target)
    url = API + path.format(repository=target["repository"].uuid, task=target["task"].id)

    response = getattr(client_of(ORGS[caller]), method)(url, body, format="json")

    assert response.status_code == 404, response.content
    [error] = response.json()["errors"]
    assert error["status"] == 404 and error["title"] == "Not Found"
    assert state(target) == before
    # The owner still reaches it.
    if method == "get":
        assert getattr(client_of(ORGS[owner]), method)(url).status_code == 200


@pytest.mark.parametrize(("caller", "owner"), [("A", "B"), ("B", "A")])
def test_lists_hold_only_the_caller_s_objects(owned, caller, owner):
    client = client_of(ORGS[caller])
    mine, theirs = owned[caller], owned[owner]

    repositories = client.get(f"{API}repositories/").json()["data"]
    tasks = client.get(f"{API}tasks/").json()["data"]
    by_their_repository = client.get(f"{API}tasks/?repository_uuid={theirs['repository'].uuid}").json()["data"]
    by_name = client.get(f"{API}repositories/?name=same name").json()["data"]

    assert [item["uuid"] for item in repositories] == [str(mine["repository"].uuid)]
    assert [item["uuid"] for item in tasks] == [str(mine["task"].id)]
    assert by_their_repository == []
    assert [item["org_id"] for item in by_name] == [ORGS[caller]]


def test_a_repository_url_another_organisation_uses_is_free_to_use(owned):
    theirs = owned["B"]["repository"]

    response = client_of(ORG_A).post(
        f"{API}repositories/", {"name": "mine", "url": theirs.repository.url}, format="json"
    )

    assert response.status_code == 201
    assert response.json()["org_id"] == ORG_A


def test_red_hat_s_tasks_are_seen_by_all_and_cancelled_by_none(owned):
    red_hat = RepositoryTaskFactory(configuration=ConfigurationFactory(org_id="-1"), type="snapshot")

    for org_id in ORGS.values():
        client = client_of(org_id)
        assert client.get(f"{API}tasks/{red_hat.id}/").status_code == 200
        assert str(red_hat.id) in [item["uuid"] for item in client.get(f"{API}tasks/").json()["data"]]
        assert client.post(f"{API}tasks/{red_hat.id}/cancel/").status_code == 400
    red_hat.refresh_from_db()
    assert (red_hat.status, red_hat.cancel_attempted) == ("pending", False)
