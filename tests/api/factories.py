"""Factories for the repositories tables, for putting an organisation's rows in a given state
directly (the tasks' own are in tests/factories.py)."""

import hashlib

import factory

from repositories.models import Blob, Repository, RepositoryConfiguration, Snapshot
from repositories.services import INTROSPECT, OBJECT_TYPE, SNAPSHOT
from tests.factories import TaskFactory

ORG_A = "1000001"
ORG_B = "2000002"


class RepositoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Repository

    url = factory.Sequence(lambda n: f"https://mirror.example.com/repo-{n}/")
    status = Repository.Status.VALID
    package_count = 3


class ConfigurationFactory(factory.django.DjangoModelFactory):
    """An organisation's live repository."""

    class Meta:
        model = RepositoryConfiguration

    org_id = ORG_A
    account_id = "acct-1"
    name = factory.Sequence(lambda n: f"repository {n:04d}")
    repository = factory.SubFactory(RepositoryFactory)
    distribution_versions = factory.LazyFunction(lambda: ["9"])
    distribution_arch = "x86_64"
    snapshot = True


class BlobFactory(factory.django.DjangoModelFactory):
    """A blob row (the storage's file is left out: the API lists snapshots, it serves none)."""

    class Meta:
        model = Blob

    sha256 = factory.Sequence(lambda n: hashlib.sha256(f"blob {n}".encode()).hexdigest())
    size = 1234


class SnapshotFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Snapshot

    repository_configuration = factory.SubFactory(ConfigurationFactory)
    repomd = factory.SubFactory(BlobFactory)
    content_counts = factory.LazyFunction(lambda: {"rpm": 3, "advisory": 2})
    added_counts = factory.LazyFunction(lambda: {"rpm": 3, "advisory": 2})
    removed_counts = factory.LazyFunction(dict)


class RepositoryTaskFactory(TaskFactory):
    """A task about a configuration's repository, of its organisation, as the services enqueue
    them: `configuration` is required."""

    class Meta:
        exclude = ["configuration"]

    type = INTROSPECT
    configuration = None
    org_id = factory.LazyAttribute(lambda task: task.configuration.org_id)
    object_uuid = factory.LazyAttribute(lambda task: task.configuration.uuid)
    object_type = OBJECT_TYPE
    payload = factory.LazyAttribute(lambda task: {"repository_uuid": str(task.configuration.repository_id)})


__all__ = [
    "ORG_A",
    "ORG_B",
    "SNAPSHOT",
    "BlobFactory",
    "ConfigurationFactory",
    "RepositoryFactory",
    "RepositoryTaskFactory",
    "SnapshotFactory",
    "TaskFactory",
]
