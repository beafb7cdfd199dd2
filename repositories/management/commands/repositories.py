"""`manage.py repositories`: add, list, show and delete repositories, queue introspections and
snapshots, and run the nightly job, from a shell.

Writes go through `repositories.services`, as the API's do; bad input is a one-line
CommandError, never a traceback.
"""

import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from repositories import selectors, services
from repositories.exceptions import RepositoryError
from repositories.models import RepositoryConfiguration
from repositories.validation import clean_org, is_printable
from repositories.yum.fetch import redact
from tasks.exceptions import TaskAlreadyQueued
from tasks.models import Task

# The organisation of repositories added from a shell, unless --org says otherwise.
SHELL_ORG = "shell"
RECENT_TASKS = 10


class Command(BaseCommand):
    help = "Add, list, show and delete repositories; introspect and snapshot them; run the nightly job."

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="command", required=True)

        add = commands.add_parser("add", help="add a repository and queue its introspection (and snapshot)")
        add.add_argument("name")
        add.add_argument("url")
        add.add_argument("--snapshot", action="store_true", help="snapshot it after its introspection, and nightly")
        add.add_argument("--org", default=SHELL_ORG, help=f"the organisation (default: {SHELL_ORG})")

        listing = commands.add_parser("list", help="list the repositories of an organisation")
        listing.add_argument("--org", default=SHELL_ORG, help=f"the organisation (default: {SHELL_ORG})")

        for name, help_text in (
            ("show", "show a repository, its snapshots and its recent tasks"),
            ("introspect", "queue an introspection"),
            ("snapshot", "queue a snapshot"),
            ("delete", "delete a repository and its snapshots"),
        ):
            command = commands.add_parser(name, help=help_text)
            command.add_argument("repository", help="its name or uuid")
            command.add_argument("--org", default=SHELL_ORG, help=f"the organisation (default: {SHELL_ORG})")
            if name == "introspect":
                command.add_argument("--force", action="store_true", help="parse even if unchanged")

        nightly = commands.add_parser("nightly", help="queue the introspection (and snapshot) of every repository")
        nightly.add_argument("--batch-size", type=int, default=500, help="repositories a transaction (default: 500)")

    def handle(self, *args: Any, command: str, **options: Any) -> None:
        try:
            if "org" in options:
                clean_org(options["org"], field="--org")
            getattr(self, f"handle_{command}")(**options)
        except RepositoryError as exc:
            raise CommandError(str(exc)) from None
        except TaskAlreadyQueued as exc:
            raise CommandError(f"already queued: task {exc.task_id} is pending or running") from None

    def handle_add(self, *, name: str, url: str, snapshot: bool, org: str, **options: Any) -> None:
        configuration = services.repository_configuration_create(org_id=org, name=name, url=url, snapshot=snapshot)
        self.stdout.write(str(configuration.uuid))

    def handle_list(self, *, org: str, **options: Any) -> None:
        configurations = list(selectors.configuration_list(org_id=org))
        if not configurations:
            self.stdout.write("no repositories")
            return
        columns = ("uuid", "name", "status", "packages", "snapshots", "url")
        rows = [
            (
                str(c.uuid),
                c.name,
                c.repository.status,
                str(c.repository.package_count),
                "yes" if c.snapshot else "no",
                redact(c.repository.url),
            )
            for c in configurations
        ]
        widths = [max(len(row[i]) for row in [columns, *rows]) for i in range(len(columns))]
        for row in [columns, *rows]:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())

    def handle_show(self, *, repository: str, org: str, **options: Any) -> None:
        configuration = self._find(repository, org)
        upstream = configuration.repository
        fields = [
            ("uuid", configuration.uuid),
            ("name", configuration.name),
            ("org", configuration.org_id),
            ("url", redact(upstream.url)),
            ("status", upstream.status),
            ("packages", upstream.package_count),
            ("revision", upstream.revision or "-"),
            ("last introspection", upstream.last_introspection_time or "-"),
            ("error", upstream.last_introspection_error or "-"),
            ("failed introspections", upstream.failed_introspections_count),
            ("snapshot", "on" if configuration.snapshot else "off"),
            ("snapshot error", _error_of(configuration.last_snapshot_task)),
        ]
        for label, value in fields:
            self.stdout.write(f"{label + ':':<23}{value}")
        self.stdout.write("snapshots:")
        for taken in selectors.snapshot_list(configuration=configuration)[:RECENT_TASKS]:
            url = f"/{settings.CONTENT_URL_PREFIX}{configuration.org_id}/{taken.uuid}/"
            counts = json.dumps(taken.content_counts, sort_keys=True)
            self.stdout.write(f"  {taken.uuid}  {taken.created_at.isoformat(timespec='seconds')}  {url}  {counts}")
        self.stdout.write("tasks:")
        tasks = Task.objects.filter(object_uuid=configuration.uuid, org_id=configuration.org_id).order_by("-queued_at")
        for task in tasks[:RECENT_TASKS]:
            error = f"  {task.error}" if task.error else ""
            self.stdout.write(f"  {task.id}  {task.type:<28}{task.status:<10}{error}".rstrip())

    def handle_introspect(self, *, repository: str, org: str, force: bool, **options: Any) -> None:
        configuration = self._find(repository, org)
        self.stdout.write(str(services.repository_introspect(configuration=configuration, force=force)))

    def handle_snapshot(self, *, repository: str, org: str, **options: Any) -> None:
        configuration = self._find(repository, org)
        self.stdout.write(str(services.repository_snapshot(configuration=configuration)))

    def handle_delete(self, *, repository: str, org: str, **options: Any) -> None:
        configuration = self._find(repository, org)
        task_id = services.repository_configuration_delete(configuration=configuration)
        self.stdout.write(f"deleted {configuration.name}; its snapshots go with task {task_id}")

    def handle_nightly(self, *, batch_size: int, **options: Any) -> None:
        if batch_size < 1:
            raise CommandError(f"--batch-size must be at least 1: {batch_size}")
        done = services.repositories_nightly(batch_size=batch_size)
        deletions = f"; queued again the deletion of {done.deletions} deleted repositories" if done.deletions else ""
        self.stdout.write(
            f"queued {done.introspections} introspections and {done.snapshots} snapshots;"
            f" {done.already_queued} were already queued{deletions}"
        )

    def _find(self, repository: str, org: str) -> RepositoryConfiguration:
        if not is_printable(repository):  # bytes that are not UTF-8 on the command line, say
            raise CommandError(f"repository is not valid text: {repository!r}")
        try:
            return selectors.configuration_get(org_id=org, uuid=repository)
        except RepositoryError:
            return selectors.configuration_by_name(org_id=org, name=repository)


def _error_of(task: Task | None) -> str:
    """The error of a task that failed, else `-`."""
    return task.error if task is not None and task.status == Task.Status.FAILED and task.error else "-"
