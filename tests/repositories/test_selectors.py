"""The selectors: reads scoped to an organisation, live configurations only."""

import uuid

import pytest

from repositories import selectors
from repositories.exceptions import ConfigurationNotFound
from repositories.models import Package, Repository
from tests.repositories.factories import RepositoryConfigurationFactory

pytestmark = pytest.mark.django_db


def names(configurations) -> list[str]:
    return [configuration.name for configuration in configurations]


def test_an_organisation_lists_its_live_configurations_by_name_and_filters_them():
    RepositoryConfigurationFactory(name="b-appstream", repository__url="https://cdn.example.com/appstream/")
    valid = RepositoryConfigurationFactory(name="a-baseos", repository__url="https://cdn.example.com/baseos/")
    Repository.objects.filter(pk=valid.repository_id).update(status=Repository.Status.VALID)
    RepositoryConfigurationFactory(name="c-gone", deleted=True)
    RepositoryConfigurationFactory(name="other org's", org_id="globex")

    assert names(selectors.configuration_list(org_id="acme")) == ["a-baseos", "b-appstream"]
    assert names(selectors.configuration_list(org_id="acme", status="Valid")) == ["a-baseos"]
    assert names(selectors.configuration_list(org_id="acme", url="https://cdn.example.com/appstream/")) == [
        "b-appstream"
    ]
    assert names(selectors.configuration_list(org_id="acme", search="BASE")) == ["a-baseos"]
    assert names(selectors.configuration_list(org_id="acme", name="c-gone")) == []


def test_a_configuration_of_another_organisation_or_deleted_is_not_found():
    mine = RepositoryConfigurationFactory()
    theirs = RepositoryConfigurationFactory(org_id="globex")
    deleted = RepositoryConfigurationFactory(deleted=True)

    assert selectors.configuration_get(org_id="acme", uuid=mine.uuid) == mine
    assert selectors.configuration_get(org_id=None, uuid=theirs.uuid) == theirs
    for org_id, wanted in (
        ("acme", theirs.uuid),
        ("acme", deleted.uuid),
        ("acme", "not-a-uuid"),
        ("acme", uuid.uuid4()),
    ):
        with pytest.raises(ConfigurationNotFound, match=f"^repository {wanted} not found$"):
            selectors.configuration_get(org_id=org_id, uuid=wanted)


def test_the_packages_of_a_configuration_are_those_of_its_repository_by_name():
    configuration = RepositoryConfigurationFactory()
    other = RepositoryConfigurationFactory()
    zsh, bash, vim = (
        Package.objects.create(
            name=name, arch="x86_64", version="1", release="1", checksum_type="sha256", checksum=name
        )
        for name in ("zsh", "bash", "vim")
    )
    configuration.repository.packages.add(zsh, bash)
    other.repository.packages.add(vim, bash)

    assert [package.name for package in selectors.package_list(configuration=configuration)] == ["bash", "zsh"]
