"""Content-addressed blobs in the snapshot storage: a row exactly while its file exists."""

import hashlib

import pytest
from django.db import transaction

from repositories.storage import blob_name, hold_blobs, release_blobs, store_blob
from tests.repositories.domain import blob_rows, stored_names

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def local_file(tmp_path):
    path = tmp_path / "primary.xml.gz"
    path.write_bytes(b"some metadata")
    return path, hashlib.sha256(b"some metadata").hexdigest()


def test_a_blob_is_stored_once_and_released_with_its_file(snapshot_storage, local_file):
    path, sha256 = local_file

    assert store_blob(path, sha256=sha256, size=13) is True
    assert store_blob(path, sha256=sha256, size=13) is False
    assert (snapshot_storage / blob_name(sha256)).read_bytes() == b"some metadata"

    assert release_blobs([sha256, sha256]) == [sha256]
    assert blob_rows() == stored_names(snapshot_storage) == set()


def test_a_file_that_a_killed_store_left_without_its_row_is_released_too(snapshot_storage, local_file):
    path, sha256 = local_file
    left = snapshot_storage / blob_name(sha256)
    left.parent.mkdir(parents=True)
    left.write_bytes(b"some meta")  # the store was killed part way, before its row committed

    assert release_blobs([sha256]) == [sha256]

    assert blob_rows() == stored_names(snapshot_storage) == set()
    assert release_blobs([sha256]) == []


def test_a_held_blob_that_was_released_meanwhile_is_stored_again(snapshot_storage, local_file):
    path, sha256 = local_file
    store_blob(path, sha256=sha256, size=13)
    release_blobs([sha256])  # by another run, which had stored it first and then failed

    with transaction.atomic():
        assert hold_blobs({sha256: path}) == [sha256]
        assert hold_blobs({sha256: path}) == []

    assert blob_rows() == stored_names(snapshot_storage) == {sha256}


def test_blobs_are_held_only_for_a_transaction(snapshot_storage, local_file):
    path, sha256 = local_file

    with pytest.raises(RuntimeError, match="call it inside one"):
        hold_blobs({sha256: path})
