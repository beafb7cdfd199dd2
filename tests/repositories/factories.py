"""Factories of the repositories domain's tables, for rows in a given state without running
a task. Rows that the handlers make (packages, snapshots, blobs) are made by the handlers in
the tests that are about them."""

import factory
from django.utils import timezone

from repositories.models import Repository, RepositoryConfiguration


class RepositoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Repository
        django_get_or_create = ("url",)

    url = factory.Sequence(lambda n: f"https://mirror.example.com/repo-{n}/")


class RepositoryConfigurationFactory(factory.django.DjangoModelFactory):
    """A live configuration, with no task queued for it (the services queue them)."""

    class Meta:
        model = RepositoryConfiguration

    org_id = "acme"
    name = factory.Sequence(lambda n: f"repository {n}")
    repository = factory.SubFactory(RepositoryFactory)

    class Params:
        deleted = factory.Trait(deleted_at=factory.LazyFunction(timezone.now))
