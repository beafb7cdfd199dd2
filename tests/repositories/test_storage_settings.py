"""The snapshot storage is whatever settings say: a directory by default, an S3-compatible store
through django-storages with nothing but settings."""

import subprocess
import sys

from django.core.files.storage import FileSystemStorage

from repositories.storage import blob_name, snapshot_storage


def test_the_default_is_a_directory_of_content_addressed_files():
    assert isinstance(snapshot_storage(), FileSystemStorage)
    assert blob_name("ab" * 32) == f"sha256/ab/{'ab' * 32}"


def test_an_s3_store_needs_only_settings(settings):
    # Changing STORAGES through the settings fixture drops Django's cached storages, both ways.
    from storages.backends.s3 import S3Storage

    settings.STORAGES = {
        **settings.STORAGES,
        "snapshots": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {"bucket_name": "snapshots", "endpoint_url": "https://s3.example.com", "region_name": "x"},
        },
    }
    storage = snapshot_storage()
    assert isinstance(storage, S3Storage)
    assert (storage.bucket_name, storage.endpoint_url) == ("snapshots", "https://s3.example.com")
    assert storage.file_overwrite  # a blob's name is its content: saving it again must not rename it


def test_a_process_on_the_default_storage_never_loads_boto3():
    """The S3 backend's module (and boto3, ~25 MiB) is imported only when the settings name it:
    a `runworkers` process on a directory would otherwise carry it for nothing."""
    code = (
        "import sys, django; django.setup();"
        "from django.core.management import load_command_class; load_command_class('tasks', 'runworkers');"
        "from repositories.storage import open_blob, snapshot_storage; snapshot_storage();"
        "print(sorted(m for m in ('boto3', 'botocore', 'storages.backends.s3') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
