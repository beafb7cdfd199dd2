"""The API through real HTTP, end to end: a repository created against a local yum repository
(real createrepo_c metadata) is introspected and snapshotted by a real `runworkers`, and its
snapshot is served back by the app as a yum repository that the yum layer reads."""

import json
import urllib.error
import urllib.request
from pathlib import Path

from contentsources.api.identity import encode_identity
from repositories.yum import YumRepository
from tests.api.conftest import API
from tests.api.factories import ORG_A
from tests.helpers import wait_until

IDENTITY = encode_identity(org_id=ORG_A, account_number="acct-1", user="alice")


def call(method: str, url: str, body: object = None, **headers: str) -> tuple[int, dict[str, str], object]:
    """One HTTP request with the caller's identity: status, headers and JSON body (or bytes)."""
    request = urllib.request.Request(
        url,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"x-rh-identity": IDENTITY, "Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, answer_headers, content = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        status, answer_headers, content = error.code, dict(error.headers), error.read()
    kind = answer_headers.get("Content-Type", "")
    return status, answer_headers, json.loads(content) if kind == "application/json" and content else content


def test_a_repository_is_introspected_snapshotted_and_served_back(
    app_server, runworkers, yum_server, repository, snapshot_storage, tmp_path
):
    yum = yum_server()
    api = f"{app_server}{API}"

    status, headers, created = call(
        "POST", f"{api}repositories/", {"name": "e2e", "url": yum.url(), "snapshot": True},
        **{"x-rh-insights-request-id": "e2e-1"},
    )  # fmt: skip
    assert status == 201, created
    assert headers["x-rh-insights-request-id"] == "e2e-1"
    uuid = created["uuid"]

    workers = runworkers(
        "--workers", "2",
        REPOSITORIES_ALLOW_PRIVATE_URLS="true",
        SNAPSHOT_STORAGE_OPTIONS=json.dumps({"location": str(snapshot_storage)}),
    )  # fmt: skip

    def tasks_done() -> list | None:
        tasks = call("GET", f"{api}tasks/?repository_uuid={uuid}")[2]["data"]
        return tasks if len(tasks) == 2 and all(task["status"] == "completed" for task in tasks) else None

    tasks = wait_until(tasks_done, timeout=60, interval=0.2, message="the introspection and the snapshot")
    assert sorted(task["type"] for task in tasks) == ["introspect", "snapshot"]
    assert {task["object_name"] for task in tasks} == {"e2e"}
    log = workers.log()
    assert "repository introspected" in log and "request_id=e2e-1" in log

    status, _, got = call("GET", f"{api}repositories/{uuid}/")
    assert status == 200
    assert (got["status"], got["package_count"], got["failed_introspections_count"]) == ("Valid", 3, 0)
    assert got["last_snapshot_task"]["status"] == "completed"
    snapshot_url = got["last_snapshot"]["url"]
    assert snapshot_url == f"{app_server}/content/{ORG_A}/{got['last_snapshot']['uuid']}/"

    status, _, snapshots = call("GET", f"{api}repositories/{uuid}/snapshots/")
    assert status == 200
    [snapshot] = snapshots["data"]
    assert snapshot["url"] == snapshot_url
    assert snapshot["content_counts"]["rpm.package"] == 3
    assert snapshot["added_counts"]["rpm.package"] == 3 and snapshot["removed_counts"] == {}

    # Served back over HTTP: repomd.xml byte for byte, and a yum repository the yum layer reads.
    status, headers, served = call("GET", f"{snapshot_url}repodata/repomd.xml")
    assert status == 200 and headers["Content-Type"] == "application/xml"
    assert served == (Path(repository) / "repodata" / "repomd.xml").read_bytes()
    work = tmp_path / "read-back"
    work.mkdir()
    read_back = YumRepository(snapshot_url, work)
    assert sorted(package.name for package in read_back.packages()) == ["bash", "tmux", "zsh"]
    # Another organisation's path to it finds nothing.
    assert call("GET", f"{app_server}/content/2000002/{snapshot['uuid']}/repodata/repomd.xml")[0] == 404

    # A second introspection, asked for through the API, is run too.
    status, _, task = call("POST", f"{api}repositories/{uuid}/introspect/")
    assert status == 201
    wait_until(
        lambda: call("GET", f"{api}tasks/{task['uuid']}/")[2]["status"] == "completed",
        timeout=30,
        interval=0.2,
        message="the second introspection",
    )
