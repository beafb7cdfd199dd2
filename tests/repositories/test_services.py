"""The services: a configuration and its tasks are written in one transaction, and the
database holds one pending or running task of a kind per configuration."""

import threading

import pytest
from django.db import connection, transaction

from repositories import services
from repositories.exceptions import ConfigurationNotFound, InvalidInput, SnapshotsNotEnabled
from repositories.models import Repository, RepositoryConfiguration
from tasks.exceptions import TaskAlreadyQueued
from tasks.models import Task
from tests.helpers import wait_until
from tests.repositories.domain import run_in_thread, waiting_for_a_lock
from tests.repositories.factories import RepositoryConfigurationFactory

URL = "https://mirror.example.com/rhel9/baseos/"


def create(**fields) -> RepositoryConfiguration:
    return services.repository_configuration_create(**{"org_id": "acme", "name": "baseos", "url": URL, **fields})


def active_tasks(configuration: RepositoryConfiguration) -> dict[str, Task]:
    tasks = Task.objects.filter(object_uuid=configuration.uuid, status__in=["pending", "running"])
    return {task.type: task for task in tasks}


@pytest.mark.django_db
def test_creating_a_configuration_queues_its_introspection_with_it():
    configuration = create(account_id="42", request_id="req-1")

    [introspect] = Task.objects.all()
    assert introspect.type == "introspect"
    assert introspect.payload == {"repository_uuid": str(configuration.repository_id), "force": True}
    assert (introspect.org_id, introspect.account_id, introspect.request_id) == ("acme", "42", "req-1")
    assert (introspect.object_uuid, introspect.object_type) == (configuration.uuid, "repository")
    assert introspect.unique_key == f"introspect:{configuration.uuid}"
    assert introspect.status == Task.Status.PENDING
    configuration.refresh_from_db()
    assert configuration.last_introspection_task_id == introspect.id
    assert configuration.last_snapshot_task_id is None


@pytest.mark.django_db
def test_with_snapshots_on_a_snapshot_is_queued_after_the_introspection():
    configuration = create(snapshot=True)

    tasks = active_tasks(configuration)
    assert set(tasks) == {"introspect", "snapshot"}
    snapshot = tasks["snapshot"]
    assert list(snapshot.dependencies.all()) == [tasks["introspect"]]
    assert snapshot.payload == {"repository_configuration_uuid": str(configuration.uuid)}
    assert snapshot.dependencies_left == 1
    configuration.refresh_from_db()
    assert configuration.last_snapshot_task_id == snapshot.id


@pytest.mark.django_db
def test_a_create_rolled_back_leaves_no_configuration_and_no_task():
    with pytest.raises(RuntimeError, match="the caller's next write failed"), transaction.atomic():
        create(snapshot=True)
        raise RuntimeError("the caller's next write failed")

    assert not RepositoryConfiguration.objects.exists()
    assert not Task.objects.exists()


@pytest.mark.django_db
def test_one_repository_by_its_normalised_url_serves_every_organisation():
    acme = create(url="HTTPS://Mirror.Example.COM:443/rhel9/baseos")
    globex = create(url=URL, org_id="globex")

    assert acme.repository_id == globex.repository_id
    assert Repository.objects.get().url == URL


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        ("https://mirror.example.com/rhel 9/base os", "https://mirror.example.com/rhel%209/base%20os/"),
        ("https://mirror.example.com/a/./rhel9/../rhel9/baseos/.", URL.replace("rhel9/baseos", "a/rhel9/baseos")),
        ("https://mirror.example.com/../rhel9/baseos", URL),
        ("https://mirror.example.com/%7erepo/%2f/caf\u00e9", "https://mirror.example.com/~repo/%2F/caf%C3%A9/"),
        (
            "https://mirror.example.com/repo?token=a b&arch=x86_64",
            "https://mirror.example.com/repo/?token=a%20b&arch=x86_64",
        ),
        ("https://mirror.example.com", "https://mirror.example.com/"),
    ],
)
def test_a_url_is_normalised_percent_encoded_with_its_dot_segments_resolved_and_its_query_kept(given, normalized):
    assert create(url=given).repository.url == normalized
    # Written either way, it is the same repository.
    assert create(url=normalized, name="again", org_id="globex").repository_id == Repository.objects.get().uuid


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"name": "  "}, "name", "name is required"),
        ({"name": "bell\x07"}, "name", r"^name is not printable text: 'bell\\x07'$"),
        ({"name": "n" * 256}, "name", "^name is longer than 255 characters$"),
        (
            {"url": "https://mirror.example.com/\x00"},
            "url",
            r"^url is not printable text: 'https://mirror.example.com/\\x00'$",
        ),
        ({"url": "ftp://mirror.example.com/repo/"}, "url", "url must start with http:// or https://"),
        ({"url": "https:///repo/"}, "url", "url has no host"),
        ({"url": "https://mirror.example.com:99999/"}, "url", "url is not a valid URL: Port out of range"),
        ({"distribution_arch": "sparc"}, "distribution_arch", "distribution_arch must be one of any, x86_64"),
        ({"distribution_versions": ["9", ""]}, "distribution_versions", "has an invalid version: ''"),
        ({"org_id": ""}, "org_id", "org_id must be 1 to 255 printable characters other than /: ''"),
        ({"org_id": "a/b"}, "org_id", "org_id must be 1 to 255 printable characters other than /: 'a/b'"),
        ({"gpg_key": "\x00"}, "gpg_key", "gpg_key must be text"),
    ],
)
def test_bad_input_is_refused_naming_its_field_and_queues_nothing(fields, field, message):
    with pytest.raises(InvalidInput, match=message) as raised:
        create(**fields)

    assert raised.value.field == field
    assert "\n" not in str(raised.value)
    assert not RepositoryConfiguration.objects.exists() and not Task.objects.exists()


@pytest.mark.django_db
def test_a_name_or_url_the_organisation_already_uses_is_refused():
    create()

    with pytest.raises(InvalidInput, match="^a repository named 'baseos' already exists$") as raised:
        create(url="https://mirror.example.com/other/")
    assert raised.value.field == "name"
    with pytest.raises(InvalidInput, match=f"^a repository with the URL {URL} already exists$") as raised:
        create(name="other")
    assert raised.value.field == "url"
    assert Task.objects.count() == 1


@pytest.mark.django_db
def test_a_message_about_a_url_never_shows_its_credentials():
    create(url="https://mirror-user:s3cret@mirror.example.com/private/")

    with pytest.raises(InvalidInput) as raised:
        create(name="again", url="https://mirror-user:s3cret@mirror.example.com/private/")

    assert str(raised.value) == "a repository with the URL https://mirror.example.com/private/ already exists"


@pytest.mark.django_db
def test_deleting_soft_deletes_cancels_the_active_tasks_and_queues_the_deletion_of_the_snapshots():
    configuration = create(snapshot=True, request_id="req-2")
    queued = active_tasks(configuration)

    task_id = services.repository_configuration_delete(configuration=configuration, request_id="req-3")

    deleted = RepositoryConfiguration.objects.get(pk=configuration.pk)
    assert deleted.deleted_at is not None
    assert not RepositoryConfiguration.live.filter(pk=configuration.pk).exists()
    for task in queued.values():
        assert Task.objects.get(pk=task.id).status == Task.Status.CANCELED
    removal = Task.objects.get(pk=task_id)
    assert (removal.type, removal.status, removal.request_id) == ("delete-repository-snapshots", "pending", "req-3")
    assert removal.payload == {"repository_configuration_uuid": str(configuration.uuid)}
    # The name and the URL are free again, while the deleted one waits for its task.
    create(snapshot=True)
    with pytest.raises(ConfigurationNotFound, match=f"^repository {configuration.uuid} not found$"):
        services.repository_introspect(configuration=configuration)


@pytest.mark.django_db
def test_changing_the_url_cancels_the_active_tasks_and_queues_new_ones_for_the_new_repository():
    configuration = create(snapshot=True)
    old = active_tasks(configuration)

    changed = services.repository_configuration_update(configuration=configuration, url="https://elsewhere.example/")

    assert {Task.objects.get(pk=task.id).status for task in old.values()} == {Task.Status.CANCELED}
    new = active_tasks(changed)
    assert set(new) == {"introspect", "snapshot"}
    assert new["introspect"].payload == {"repository_uuid": str(changed.repository_id), "force": True}
    assert changed.repository.url == "https://elsewhere.example/"


@pytest.mark.django_db
def test_turning_snapshots_on_queues_one_and_a_snapshot_needs_them_on():
    configuration = create()
    with pytest.raises(SnapshotsNotEnabled, match="^snapshots are not enabled for the repository 'baseos'$"):
        services.repository_snapshot(configuration=configuration)

    services.repository_configuration_update(configuration=configuration, snapshot=True)

    snapshot = active_tasks(configuration)["snapshot"]
    with pytest.raises(TaskAlreadyQueued) as raised:
        services.repository_snapshot(configuration=configuration)
    assert raised.value.task_id == snapshot.id


@pytest.mark.django_db(transaction=True)
def test_two_requests_at_once_queue_one_task_and_the_second_is_told_which():
    configuration = RepositoryConfigurationFactory()
    first_queued, commit = threading.Event(), threading.Event()
    second_pid: list[int] = []

    def first():
        with transaction.atomic():
            task_id = services.repository_introspect(configuration=configuration)
            first_queued.set()
            assert commit.wait(10)
        return task_id

    def second():
        connection.ensure_connection()
        second_pid.append(connection.connection.info.backend_pid)
        assert first_queued.wait(10)
        return services.repository_introspect(configuration=configuration)

    one, first_outcome = run_in_thread(first)
    two, second_outcome = run_in_thread(second)
    # The second waits for the first's transaction, holding no task of its own.
    wait_until(lambda: second_pid and waiting_for_a_lock(second_pid[0]), message="the second request to wait")
    commit.set()
    one.join(10)
    two.join(10)

    [task_id] = first_outcome
    [refused] = second_outcome
    assert isinstance(refused, TaskAlreadyQueued), refused
    assert refused.task_id == task_id
    assert str(task_id) in str(refused)
    assert Task.objects.filter(type="introspect").count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_organisations_adding_one_new_url_at_once_share_one_repository():
    first_created, commit = threading.Event(), threading.Event()
    second_pid: list[int] = []

    def first():
        with transaction.atomic():
            configuration = create(org_id="acme")
            first_created.set()
            assert commit.wait(10)
        return configuration

    def second():
        connection.ensure_connection()
        second_pid.append(connection.connection.info.backend_pid)
        assert first_created.wait(10)
        return create(org_id="globex")

    one, first_outcome = run_in_thread(first)
    two, second_outcome = run_in_thread(second)
    wait_until(lambda: second_pid and waiting_for_a_lock(second_pid[0]), message="the second to wait")
    commit.set()
    one.join(10)
    two.join(10)

    [acme], [globex] = first_outcome, second_outcome
    assert isinstance(globex, RepositoryConfiguration), globex
    assert acme.repository_id == globex.repository_id
    assert Repository.objects.count() == 1
    assert Task.objects.filter(type="introspect").count() == 2
