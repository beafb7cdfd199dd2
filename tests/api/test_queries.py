"""No N+1: each collection answers in the same number of queries for 1 item as for 30, every
item carrying what it refers to (repository, last snapshot, last task; a task's object and
its dependencies)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tasks.models import TaskDependency
from tests.api.conftest import API
from tests.api.factories import ORG_A, ConfigurationFactory, RepositoryTaskFactory, SnapshotFactory


def queries(api, path: str, items: int) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = api.get(f"{API}{path}")
    assert response.status_code == 200, response.content
    assert len(response.json()["data"]) == items
    return len(captured)


def full_repository(**fields):
    """A repository with everything a list item shows: a last snapshot and a last task."""
    configuration = ConfigurationFactory(**fields)
    configuration.last_snapshot = SnapshotFactory(repository_configuration=configuration)
    configuration.last_snapshot_task = RepositoryTaskFactory(configuration=configuration, type="snapshot", failed=True)
    configuration.save()
    return configuration


def linked_tasks(count: int) -> None:
    """Tasks about repositories, each depending on the one before."""
    previous = None
    for _ in range(count):
        task = RepositoryTaskFactory(configuration=ConfigurationFactory(org_id=ORG_A))
        if previous is not None:
            TaskDependency.objects.create(task=task, dependency=previous)
        previous = task


@pytest.mark.parametrize(
    ("path", "make"),
    [
        ("repositories/", lambda n: [full_repository() for _ in range(n)]),
        ("repositories/?search=repository&ordering=-url&status=Valid", lambda n: [full_repository() for _ in range(n)]),
        ("tasks/", linked_tasks),
        ("tasks/?status=pending,failed&type=introspect", linked_tasks),
    ],
    ids=["repositories", "repositories-filtered", "tasks", "tasks-filtered"],
)
def test_a_list_answers_in_as_many_queries_for_30_items_as_for_1(api, path, make):
    make(1)
    one = queries(api, path, 1)
    make(29)

    assert queries(api, path, 30) == one
    assert one == 1  # the page: a page that is not full gives the count


def test_the_snapshots_list_answers_in_as_many_queries_for_30_as_for_1(api):
    configuration = ConfigurationFactory()
    SnapshotFactory(repository_configuration=configuration)
    path = f"repositories/{configuration.uuid}/snapshots/"
    one = queries(api, path, 1)
    SnapshotFactory.create_batch(29, repository_configuration=configuration)

    assert queries(api, path, 30) == one
    assert one == 2  # the repository and the page


def test_the_task_list_filtered_by_repository_costs_one_query_more(api):
    configuration = ConfigurationFactory()
    RepositoryTaskFactory(configuration=configuration)

    assert queries(api, f"tasks/?repository_uuid={configuration.uuid}", 1) == 2


def test_a_full_page_costs_the_count_too_at_any_offset(api):
    linked_tasks(35)

    assert queries(api, "tasks/?limit=10", 10) == 2
    assert queries(api, "tasks/?limit=10&offset=20", 10) == 2
    assert queries(api, "tasks/?limit=10&offset=30", 5) == 1
    assert queries(api, "tasks/?limit=10&offset=40", 0) == 2  # past the end: counted
