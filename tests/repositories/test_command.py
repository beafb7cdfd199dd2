"""`manage.py repositories`: add, list, show, nightly and delete, and one-line errors."""

import io
import re
import uuid

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from repositories.models import RepositoryConfiguration
from tasks.models import Task
from tests.helpers import assert_one_line_command_error
from tests.repositories.domain import snapshot_task_of, wait_for_status
from tests.repositories.factories import RepositoryConfigurationFactory

URL = "https://mirror.example.com/rhel9/appstream/"


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("repositories", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def shown(output: str) -> dict[str, str]:
    """The `label: value` lines of `repositories show`."""
    return dict(re.findall(r"^(\w[\w ]*):[ \t]+(.*)$", output, re.MULTILINE))


@pytest.mark.django_db
def test_add_prints_the_uuid_and_queues_the_introspection_and_with_snapshot_the_snapshot():
    plain = RepositoryConfiguration.objects.get(pk=run("add", "appstream", URL).strip())
    snapshotted = RepositoryConfiguration.objects.get(
        pk=run("add", "baseos", "https://mirror.example.com/rhel9/baseos", "--snapshot", "--org", "acme").strip()
    )

    assert (plain.org_id, plain.name, plain.repository.url, plain.snapshot) == ("shell", "appstream", URL, False)
    assert set(Task.objects.filter(object_uuid=plain.uuid).values_list("type", flat=True)) == {"introspect"}
    assert (snapshotted.org_id, snapshotted.snapshot) == ("acme", True)
    types = Task.objects.filter(object_uuid=snapshotted.uuid).values_list("type", flat=True)
    assert sorted(types) == ["introspect", "snapshot"]


@pytest.mark.django_db
def test_list_shows_the_repositories_of_the_org_in_columns():
    assert run("list") == "no repositories\n"
    first = RepositoryConfigurationFactory(org_id="shell", name="baseos", repository__url=URL, snapshot=True)
    RepositoryConfigurationFactory(org_id="acme", name="elsewhere")
    RepositoryConfigurationFactory(org_id="shell", name="gone", deleted=True)

    lines = run("list").splitlines()

    assert re.split(r"\s{2,}", lines[0]) == ["uuid", "name", "status", "packages", "snapshots", "url"]
    assert re.split(r"\s{2,}", lines[1]) == [str(first.uuid), "baseos", "Pending", "0", "yes", URL]
    assert len(lines) == 2


def test_show_gives_the_repository_its_snapshots_and_its_tasks(pool, upstream):
    configuration_id = run("add", "small", upstream.url(), "--snapshot").strip()
    configuration = RepositoryConfiguration.objects.get(pk=configuration_id)
    wait_for_status(snapshot_task_of(configuration))

    output = run("show", "small")

    fields = shown(output)
    assert fields["uuid"] == configuration_id
    assert (fields["status"], fields["packages"], fields["revision"]) == ("Valid", "3", "1")
    assert (fields["error"], fields["failed introspections"], fields["snapshot"]) == ("-", "0", "on")
    assert fields["snapshot error"] == "-"
    snapshot = configuration.snapshots.get()
    assert f"  {snapshot.uuid}  " in output
    assert f"/content/shell/{snapshot.uuid}/" in output
    assert '"rpm.package": 3' in output
    assert re.search(r"^  \S+  snapshot\s+completed$", output, re.MULTILINE)
    assert re.search(r"^  \S+  introspect\s+completed$", output, re.MULTILINE)
    assert run("show", configuration_id) == output  # by uuid too


@pytest.mark.django_db
def test_list_and_show_never_show_the_credentials_of_a_url():
    run("add", "private", "https://mirror-user:s3cret@mirror.example.com/private/")

    for output in (run("list"), run("show", "private")):
        assert "s3cret" not in output and "mirror-user" not in output
        assert "https://mirror.example.com/private/" in output


@pytest.mark.django_db
def test_nightly_prints_what_it_queued():
    RepositoryConfigurationFactory(org_id="shell", snapshot=True)
    RepositoryConfigurationFactory(org_id="acme")

    assert run("nightly", "--batch-size", "1") == "queued 2 introspections and 1 snapshots; 0 were already queued\n"
    assert run("nightly") == "queued 0 introspections and 0 snapshots; 3 were already queued\n"


@pytest.mark.django_db
def test_delete_soft_deletes_and_names_the_task_that_removes_the_snapshots():
    configuration = RepositoryConfigurationFactory(org_id="shell", name="baseos")

    output = run("delete", "baseos")

    task = Task.objects.get(type="delete-repository-snapshots")
    assert output == f"deleted baseos; its snapshots go with task {task.id}\n"
    configuration.refresh_from_db()
    assert configuration.deleted_at is not None
    with pytest.raises(CommandError, match="^no repository named 'baseos' in org shell$"):
        run("delete", "baseos")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "x", "ftp://mirror.example.com/"], "url must start with http:// or https://, not 'ftp://mirror"),
        (["add", "", URL], "name is required"),
        (["show", "missing"], "no repository named 'missing' in org shell"),
        (["show", str(uuid.UUID(int=5))], f"no repository named '{uuid.UUID(int=5)}' in org shell"),
        (["snapshot", "taken"], "snapshots are not enabled for the repository 'taken'"),
        (["introspect", "taken"], "already queued: task "),
        (["list", "--org", ""], "--org must be 1 to 255 printable characters other than /: ''"),
        (["nightly", "--batch-size", "0"], "--batch-size must be at least 1: 0"),
    ],
)
def test_bad_input_is_a_one_line_command_error(args, message):
    run("add", "taken", URL)
    tasks = Task.objects.count()

    with pytest.raises(CommandError) as raised:
        run(*args)

    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)
    assert Task.objects.count() == tasks


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([b"add", b"n\xffme", b"https://mirror.example.com/\xff/"], "name is not printable text: 'n\\udcffme'"),
        ([b"show", b"\xffbaseos"], "repository is not valid text: '\\udcffbaseos'"),
    ],
)
def test_bytes_that_are_not_utf8_on_the_command_line_are_a_one_line_error(args, message):
    assert_one_line_command_error([b"repositories", *args], message)
    assert not RepositoryConfiguration.objects.exists()
