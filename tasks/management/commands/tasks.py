"""`manage.py tasks`: enqueue, list, show and cancel tasks from a shell.

Operators need to look at the queue and act on it when the API is not at hand (a stuck task,
a retry storm, a one-off job). Writes go through `tasks.client`, as the API's do, so the
queue's rules hold: registered types only, payload limits, the cancellation cascade. Bad input
ends in a one-line CommandError, never a traceback.
"""

import json
import uuid
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import F
from django.db.models.functions import Now

from tasks import client, queue, registry
from tasks.exceptions import TaskError, UnknownTaskType
from tasks.models import Heartbeat, Task
from tasks.payloads import is_storable_text

ERROR_WIDTH = 60
LIST_LIMIT = 100_000


def parse_task_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise CommandError(f"not a task id: {text!r} (expected a UUID)") from None


def check_text(option: str, value: str | None) -> None:
    """Refuse an argument that the database cannot store: a command line may carry bytes that
    are not UTF-8 (Python keeps them as lone surrogates)."""
    if value is not None and not is_storable_text(value):
        raise CommandError(f"{option} is not valid text: {value!r} (not UTF-8, or holds a NUL)")


def iso(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "-"


def one_line(text: str | None, width: int) -> str:
    """The text on one line, cut to `width` characters."""
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


class Command(BaseCommand):
    help = "Enqueue, list, show and cancel tasks."

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(dest="command", required=True)

        enqueue = commands.add_parser("enqueue", help="queue up a task and print its id")
        enqueue.add_argument("type", help="a registered task type")
        enqueue.add_argument("--payload", help="the payload, as JSON")
        enqueue.add_argument("--priority", type=int, default=0, help="higher runs first (default: 0)")
        enqueue.add_argument(
            "--depends-on", action="append", default=[], metavar="ID", help="run only after this task (repeatable)"
        )
        enqueue.add_argument("--org", help="the org id of the task")

        listing = commands.add_parser("list", help="list tasks, newest first")
        listing.add_argument("--status", help=f"one of: {', '.join(Task.Status.values)}")
        listing.add_argument("--type", help="only tasks of this type")
        listing.add_argument("--limit", type=int, default=50, help="at most this many tasks (default: 50)")

        show = commands.add_parser("show", help="show a task in detail")
        show.add_argument("id")

        cancel = commands.add_parser("cancel", help="cancel a task and its unfinished dependents")
        cancel.add_argument("id")

    def handle(self, *args: Any, command: str, **options: Any) -> None:
        try:
            getattr(self, f"handle_{command}")(**options)
        except TaskError as exc:
            raise CommandError(str(exc)) from None

    def handle_enqueue(
        self, *, type: str, payload: str | None, priority: int, depends_on: list[str], org: str | None, **options: Any
    ) -> None:
        try:
            payload = None if payload is None else json.loads(payload)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--payload is not valid JSON: {exc}") from None
        dependencies = [parse_task_id(text) for text in depends_on]
        try:
            task_id = client.enqueue(type, payload, dependencies=dependencies, priority=priority, org_id=org)
        except UnknownTaskType as exc:
            raise CommandError(f"{exc}; registered types: {', '.join(registry.types())}") from None
        self.stdout.write(str(task_id))

    def handle_list(self, *, status: str | None, type: str | None, limit: int, **options: Any) -> None:
        if status is not None and status not in Task.Status.values:
            raise CommandError(f"unknown status {status!r}; use one of: {', '.join(Task.Status.values)}")
        if not 1 <= limit <= LIST_LIMIT:
            raise CommandError(f"--limit must be from 1 to {LIST_LIMIT}: {limit}")
        check_text("--type", type)
        tasks = Task.objects.order_by("-queued_at", "-id")
        if status is not None:
            tasks = tasks.filter(status=status)
        if type is not None:
            tasks = tasks.filter(type=type)
        columns = ("id", "type", "status", "priority", "retries", "queued_at", "error")
        rows = [
            (str(t[0]), t[1], t[2], str(t[3]), str(t[4]), iso(t[5]), one_line(t[6], ERROR_WIDTH))
            for t in tasks.values_list(*columns)[:limit]
        ]
        if not rows:
            self.stdout.write("no tasks")
            return
        widths = [max(len(row[i]) for row in [columns, *rows]) for i in range(len(columns))]
        for row in [columns, *rows]:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())

    def handle_show(self, *, id: str, **options: Any) -> None:
        task = queue.status(parse_task_id(id))
        age = (
            Heartbeat.objects.filter(task_id=task.id)
            .annotate(age=Now() - F("heartbeat"))
            .order_by("-heartbeat")
            .values_list("age", flat=True)
            .first()
        )
        dependencies = [(d.id, d.status) for d in task.dependencies.all()]
        dependents = list(task.dependents.order_by("queued_at", "id").values_list("id", "status"))
        fields = [
            ("id", task.id),
            ("status", task.status),
            ("type", task.type),
            ("payload", json.dumps(task.payload)),
            ("org", task.org_id or "-"),
            ("request id", task.request_id or "-"),
            ("queued at", iso(task.queued_at)),
            ("started at", iso(task.started_at)),
            ("finished at", iso(task.finished_at)),
            ("retries", task.retries),
            ("next retry", iso(task.next_retry_time)),
            ("cancel attempted", "yes" if task.cancel_attempted else "no"),
            ("heartbeat age", "-" if age is None else f"{age.total_seconds():.1f}s"),
            ("error", task.error or "-"),
        ]
        for label, value in fields:
            self.stdout.write(f"{label + ':':<18}{value}")
        for label, linked in (("dependencies", dependencies), ("dependents", dependents)):
            self.stdout.write(f"{label + ':':<18}{'-' if not linked else ''}".rstrip())
            for linked_id, linked_status in linked:
                self.stdout.write(f"  {linked_id}  {linked_status}")

    def handle_cancel(self, *, id: str, **options: Any) -> None:
        task_id = parse_task_id(id)
        previous = client.cancel(task_id)
        if previous in (Task.Status.PENDING, Task.Status.RUNNING):
            self.stdout.write(f"canceled task {task_id}")
        else:
            self.stdout.write(f"task {task_id} had already finished ({previous}); marked cancel_attempted")
