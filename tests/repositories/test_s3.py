"""Snapshots in an S3-compatible store, chosen by settings only: moto's S3 server runs as a real
process on 127.0.0.1, the real handlers store a snapshot into it through django-storages, and
the app serves it back from there, streaming."""

import hashlib
import os
import socket
import subprocess
import sys
import tracemalloc
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import boto3
import pytest
from botocore.response import StreamingBody
from django.test import Client

from repositories import services
from repositories.models import RepositoryConfiguration, Snapshot
from repositories.storage import blob_name, collect_garbage, open_blob, store_blob
from tasks.models import Task
from tests.helpers import wait_until
from tests.repositories.conftest import BASH, ZSH
from tests.repositories.domain import served_files, wait_for_status
from tests.repositories.factories import RepositoryConfigurationFactory
from tests.repositories.yum_builder import build_repository, list_metadata

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
# A metadata file larger than any buffer on the way: serving it must not hold it whole.
BIG = 24 * 1024 * 1024
MEMORY_LIMIT = 8 * 1024 * 1024


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # an answer all the same
    except OSError:
        return False


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3-compatible server, a process of its own on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers(endpoint), timeout=30, interval=0.1, message="moto's S3 server to answer")
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def bucket(settings, s3_endpoint):
    """A new bucket, and the `snapshots` storage in it: nothing but settings."""
    name = f"snapshots-{uuid.uuid4().hex[:12]}"
    s3 = boto3.resource("s3", endpoint_url=s3_endpoint, region_name=REGION, **CREDENTIALS)
    s3.create_bucket(Bucket=name)
    settings.STORAGES = {
        **settings.STORAGES,
        "snapshots": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": name,
                "endpoint_url": s3_endpoint,
                "region_name": REGION,
                "access_key": CREDENTIALS["aws_access_key_id"],
                "secret_key": CREDENTIALS["aws_secret_access_key"],
            },
        },
    }
    return s3.Bucket(name)


def objects(bucket) -> dict[str, bytes]:
    return {item.key: item.get()["Body"].read() for item in bucket.objects.all()}


def test_a_snapshot_is_stored_in_an_s3_store_served_back_from_it_streaming_and_deleted_from_it(
    repository, yum_server, bucket, start_pool
):
    big = os.urandom(BIG)
    list_metadata(repository, "big", big, "big.bin")
    upstream = yum_server()
    start_pool(workers=2, types=[services.INTROSPECT, services.SNAPSHOT, services.DELETE_SNAPSHOTS])
    configuration = services.repository_configuration_create(
        org_id="acme", name="base", url=upstream.url(), snapshot=True
    )
    wait_for_status(configuration.last_snapshot_task_id, timeout=60)
    snapshot = Snapshot.objects.get(task_id=configuration.last_snapshot_task_id)

    # Stored by content in the bucket.
    files = served_files(repository)
    stored = objects(bucket)
    assert set(stored) == {blob_name(sha256) for sha256 in files.values()}
    assert all(hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1] for name, data in stored.items())

    # Served back byte for byte, whole and by range.
    client = Client()
    base = f"/content/acme/{snapshot.uuid}/"
    for path in files:
        response = client.get(base + path)
        assert response.status_code == 200 and response.streaming, path
        assert b"".join(response.streaming_content) == (repository / path).read_bytes(), path
        response.close()
    response = client.get(base + "repodata/big.bin", headers={"Range": "bytes=1000-1999"})
    assert response.status_code == 206
    assert b"".join(response.streaming_content) == big[1000:2000]
    response.close()

    # Streamed: the first bytes of the big file come before the rest is read, in little memory.
    tracemalloc.start()
    try:
        response = client.get(base + "repodata/big.bin")
        first = next(iter(response.streaming_content))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    response.close()
    assert big.startswith(first)
    assert peak < MEMORY_LIMIT, f"serving a {BIG} byte file took {peak} bytes"

    # A second snapshot reads the first back from the store, to count what changed.
    build_repository(repository, [BASH, ZSH], revision="2")
    second = wait_for_status(services.repository_snapshot(configuration=configuration), timeout=60)
    assert Snapshot.objects.get(task_id=second.id).removed_counts["rpm.package"] == 1

    # Deleted, the snapshots leave nothing in the bucket.
    deleted = services.repository_configuration_delete(configuration=configuration)
    assert wait_for_status(deleted, timeout=60).status == Task.Status.COMPLETED
    assert not RepositoryConfiguration.objects.filter(pk=configuration.pk).exists()
    assert objects(bucket) == {}


@pytest.mark.django_db
def test_the_garbage_collection_deletes_an_s3_stores_unreferenced_files_once_old_enough(bucket, settings, tmp_path):
    def stored(data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        (tmp_path / sha256).write_bytes(data)
        store_blob(tmp_path / sha256, sha256=sha256, size=len(data))
        return sha256

    used, unused = stored(b"a snapshot's repomd.xml"), stored(b"a file no snapshot uses")
    Snapshot.objects.create(repository_configuration=RepositoryConfigurationFactory(), repomd_id=used)
    rowless = hashlib.sha256(b"a file whose row never committed").hexdigest()
    bucket.put_object(Key=blob_name(rowless), Body=b"a file whose row never committed")
    everything = {blob_name(sha256) for sha256 in (used, unused, rowless)}

    assert collect_garbage() == [] and set(objects(bucket)) == everything  # young: maybe a running snapshot's

    settings.REPOSITORIES = {**settings.REPOSITORIES, "ORPHAN_FILE_AGE": 0.0}
    assert sorted(collect_garbage()) == sorted([unused, rowless])
    assert set(objects(bucket)) == {blob_name(used)}
    body = open_blob(used, start=2, length=8)
    assert isinstance(body, StreamingBody)  # the store's ranged GET, not the whole object downloaded
    assert body.read() == b"a snapshot's repomd.xml"[2:10]
    body.close()
