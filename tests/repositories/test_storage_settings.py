"""The snapshot storage is whatever settings say: a directory by default, an S3-compatible store
through django-storages with nothing but settings."""

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
