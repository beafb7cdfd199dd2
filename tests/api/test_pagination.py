"""Collections answer `{"data", "meta": {"count", "limit", "offset"}, "links": {"first", "last",
"next", "prev"}}`: the original's envelope and link rules, with a limit and offset that must be
non-negative integers (the original let anything through)."""

import datetime

import pytest
from django.utils import timezone

from tasks.models import Task
from tests.api.conftest import API
from tests.api.factories import ORG_A, ConfigurationFactory, SnapshotFactory, TaskFactory


@pytest.fixture
def tasks(db):
    """25 tasks of the caller, newest first."""
    now = timezone.now()
    made = [TaskFactory(org_id=ORG_A, queued_at=now - datetime.timedelta(seconds=n)) for n in range(25)]
    return [str(task.id) for task in made]


def page(api, query: str) -> dict:
    response = api.get(f"{API}tasks/?{query}")
    assert response.status_code == 200, response.content
    body = response.json()
    assert list(body) == ["data", "meta", "links"]
    return body


def link(query: str) -> str:
    return f"{API}tasks/?{query}"


def test_the_first_page(api, tasks):
    body = page(api, "limit=10")

    assert [item["uuid"] for item in body["data"]] == tasks[:10]
    assert body["meta"] == {"count": 25, "limit": 10, "offset": 0}
    assert body["links"] == {
        "first": link("limit=10&offset=0"),
        "last": link("limit=10&offset=20"),
        "next": link("limit=10&offset=10"),
    }


def test_a_middle_page(api, tasks):
    body = page(api, "limit=10&offset=10")

    assert [item["uuid"] for item in body["data"]] == tasks[10:20]
    assert body["links"] == {
        "first": link("limit=10&offset=0"),
        "last": link("limit=10&offset=20"),
        "next": link("limit=10&offset=20"),
        "prev": link("limit=10&offset=0"),
    }


def test_the_last_page(api, tasks):
    body = page(api, "limit=10&offset=20")

    assert [item["uuid"] for item in body["data"]] == tasks[20:]
    assert set(body["links"]) == {"first", "last", "prev"}


def test_an_offset_that_is_not_a_multiple_of_the_limit(api, tasks):
    body = page(api, "limit=10&offset=7")

    assert [item["uuid"] for item in body["data"]] == tasks[7:17]
    assert body["links"]["next"] == link("limit=10&offset=17")
    assert "prev" not in body["links"]  # 7 - 10 < 0, as in the original


def test_an_offset_past_the_end_is_an_empty_page_whose_prev_is_the_last_page(api, tasks):
    body = page(api, "limit=10&offset=100")

    assert body["data"] == []
    assert body["meta"] == {"count": 25, "limit": 10, "offset": 100}
    assert body["links"] == {
        "first": link("limit=10&offset=0"),
        "last": link("limit=10&offset=20"),
        "prev": link("limit=10&offset=20"),
    }
    assert page(api, "limit=10&offset=30")["links"]["prev"] == link("limit=10&offset=20")
    assert page(api, "offset=100")["links"]["prev"] == link("limit=100&offset=0")


def test_last_when_the_count_is_a_multiple_of_the_limit(api, tasks):
    assert page(api, "limit=5")["links"]["last"] == link("limit=5&offset=20")
    assert page(api, "limit=25")["links"] == {"first": link("limit=25&offset=0"), "last": link("limit=25&offset=0")}


def test_an_empty_collection(api, db):
    body = page(api, "")

    assert body["data"] == []
    assert body["meta"] == {"count": 0, "limit": 100, "offset": 0}
    assert body["links"] == {"first": link("limit=100&offset=0"), "last": link("limit=100&offset=0")}


@pytest.mark.parametrize(("query", "limit"), [("", 100), ("limit=0", 100), ("limit=1000", 1000), ("limit=1001", 1000)])
def test_the_limit_is_100_by_default_and_at_most_1000(api, db, query, limit):
    assert page(api, query)["meta"]["limit"] == limit


def test_the_cap_holds_with_more_rows(api, db):
    Task.objects.bulk_create(TaskFactory.build_batch(1001, org_id=ORG_A))

    body = page(api, "limit=5000")

    assert len(body["data"]) == 1000
    assert body["meta"] == {"count": 1001, "limit": 1000, "offset": 0}
    assert body["links"]["next"] == link("limit=1000&offset=1000")


@pytest.mark.parametrize("name", ["limit", "offset"])
@pytest.mark.parametrize("value", ["-1", "ten", "1.5", "", "+3", " 3", "１", "9" * 19])
def test_a_limit_or_offset_that_is_not_a_non_negative_integer_is_a_400(api, db, name, value):
    response = api.get(f"{API}tasks/", {name: value})

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "status": 400,
            "title": "Bad Request",
            "detail": f"{name}: must be a non-negative integer, not {value[:20]!r}",
        }
    ]


def test_links_keep_the_other_parameters(api, tasks):
    body = page(api, "status=pending&limit=10&type=diagnostics.noop&offset=10")

    assert body["links"]["next"] == link("limit=10&offset=20&status=pending&type=diagnostics.noop")
    assert body["links"]["prev"] == link("limit=10&offset=0&status=pending&type=diagnostics.noop")


def test_links_keep_repeated_parameters_and_encode_values(api, tasks):
    body = page(api, "limit=10&x=a%26b&x=c+d")

    assert body["links"]["next"] == link("limit=10&offset=10&x=a%26b&x=c+d")


def test_every_collection_is_enveloped_alike(api):
    configuration = ConfigurationFactory()
    ConfigurationFactory.create_batch(2)
    SnapshotFactory.create_batch(3, repository_configuration=configuration)

    for path in ("repositories/", f"repositories/{configuration.uuid}/snapshots/"):
        body = api.get(f"{API}{path}?limit=2&offset=1").json()
        assert body["meta"] == {"count": 3, "limit": 2, "offset": 1}, path
        assert len(body["data"]) == 2
        assert body["links"] == {
            "first": f"{API}{path}?limit=2&offset=0",
            "last": f"{API}{path}?limit=2&offset=2",
        }, path
