"""`manage.py tasks`: enqueue, list, show and cancel tasks from a shell, and the maintenance
jobs: cleanup, retry-failed, cancel-all, stats.

Operators need to look at the queue and act on it when the API is not at hand (a stuck task,
a retry storm, a one-off job). Writes go through `tasks.client`, as the API's do, or through
`tasks.maintenance` on the queue's own paths, so the queue's rules hold: registered types only,
payload limits, the cancellation cascade, fenced writes. Bad input ends in a one-line
CommandError, never a traceback.
"""

import json
import math
import uuid
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import OperationalError
from django.db.models import F
from django.db.models.functions import Now

from tasks import client, maintenance, queue, registry
from tasks.conf import tasking
from tasks.exceptions import TaskBusy, TaskError, UnknownTaskType
from tasks.models import Heartbeat, Task
from tasks.payloads import is_storable_text

ERROR_WIDTH = 60
LIST_LIMIT = 100_000
# The most `retry-failed --hours` looks back: a year.
MAX_HOURS = 365 * 24


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


def check_type(type: str) -> None:
    """Refuse a type that no handler serves: no pool would run its tasks."""
    check_text("--type", type)
    try:
        registry.get(type)
    except UnknownTaskType as exc:
        raise CommandError(f"{exc}; registered types: {', '.join(registry.types())}") from None


def tasks(count: int, kind: str = "") -> str:
    """`1 task`, `3 failed snapshot tasks`."""
    return f"{count} {kind + ' ' if kind else ''}task{'' if count == 1 else 's'}"


def duration(seconds: float) -> str:
    """`3d 4h`, `2h 5m`, `4m 2s`, `1.5s`: the two largest units."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    units = [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)]
    parts: list[str] = []
    rest = int(seconds)
    for name, size in units:
        if rest >= size or parts:
            parts.append(f"{rest // size}{name}")
            rest %= size
    return " ".join(parts[:2])


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

        cleanup = commands.add_parser(
            "cleanup", help="delete the finished tasks older than their type's retention (as the pools do)"
        )
        cleanup.add_argument("--dry-run", action="store_true", help="count what would be deleted; delete nothing")

        retry = commands.add_parser("retry-failed", help="requeue the failed tasks of a type that ended lately")
        retry.add_argument("--type", required=True, help="a registered task type")
        retry.add_argument(
            "--hours", type=float, default=6.0, help="those that ended in the last this many hours (default: 6)"
        )

        cancel_all = commands.add_parser(
            "cancel-all", help="cancel every pending and running task of a type, and their unfinished dependents"
        )
        cancel_all.add_argument("--type", required=True, help="a task type (cancellable or not)")
        cancel_all.add_argument("--org", help="only the tasks of this org id")
        cancel_all.add_argument("--dry-run", action="store_true", help="list what would be canceled; cancel nothing")

        commands.add_parser("stats", help="counts by type and status, the oldest pending task, the running tasks")

    def handle(self, *args: Any, command: str, **options: Any) -> None:
        try:
            getattr(self, f"handle_{command.replace('-', '_')}")(**options)
        except TaskError as exc:
            raise CommandError(str(exc)) from None
        except OperationalError as exc:  # the database is unreachable, or went away
            raise CommandError(f"database error: {one_line(str(exc), ERROR_WIDTH * 4)}") from None

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

    def handle_cleanup(self, *, dry_run: bool, **options: Any) -> None:
        cleanup = maintenance.Cleanup(dry_run=dry_run)
        try:
            while not cleanup.over:
                cleanup.step()
        except TaskBusy as exc:
            self.write_deleted(cleanup)
            raise CommandError(f"cleanup stopped: {exc}; run it again later") from None
        if cleanup.preempted and not cleanup.total:
            raise CommandError(
                "another cleanup is at work (a pool's janitor, or another `tasks cleanup`): deleted nothing"
            )
        self.write_deleted(cleanup)
        if cleanup.preempted:
            self.stdout.write("stopped: another cleanup (a pool's janitor, or another `tasks cleanup`) goes on")

    def write_deleted(self, cleanup: maintenance.Cleanup) -> None:
        verb = "would delete" if cleanup.dry_run else "deleted"
        self.stdout.write(f"{verb} {tasks(cleanup.total)}")
        for (type_, status), count in sorted(cleanup.deleted.items()):
            self.stdout.write(f"  {count:>8}  {status:<9}  {type_}")

    def handle_retry_failed(self, *, type: str, hours: float, **options: Any) -> None:
        check_type(type)
        if not (math.isfinite(hours) and 0 < hours <= MAX_HOURS):
            raise CommandError(f"--hours must be a number above 0, at most {MAX_HOURS} (a year): {hours:g}")
        retried = maintenance.retry_failed(type=type, hours=hours)
        for task_id in retried.requeued:
            self.stdout.write(f"requeued {task_id}")
        for task_id in retried.skipped:
            self.stdout.write(f"skipped {task_id} (no longer failed, or held by another transaction)")
        for task_id in retried.key_held:
            self.stdout.write(f"skipped {task_id} (another task that may still run holds its unique key)")
        skipped = len(retried.skipped) + len(retried.key_held)
        self.stdout.write(
            f"requeued {tasks(len(retried.requeued), 'failed ' + type)} that ended in the last {hours:g} hours"
            + (f"; {skipped} skipped" if skipped else "")
            + (f"; {retried.canceled} canceled by a user left as they are" if retried.canceled else "")
        )

    def handle_cancel_all(self, *, type: str, org: str | None, dry_run: bool, **options: Any) -> None:
        check_text("--type", type)
        check_text("--org", org)
        if registry.find(type) is None and not Task.objects.filter(type=type).exists():
            # A type no handler serves may still have tasks to cancel (its code was removed);
            # one that no task has either is a typo.
            raise CommandError(
                f"unknown task type: {type!r} (no handler is registered for it, and no task has it); "
                f"registered types: {', '.join(registry.types())}"
            )
        of_org = f" of org {org}" if org is not None else ""
        if dry_run:
            found = maintenance.cancelable(type=type, org=org)
            for task_id, status in found:
                self.stdout.write(f"would cancel {task_id} ({status})")
            self.stdout.write(f"would cancel {tasks(len(found), type)}{of_org}, with their unfinished dependents")
            return
        done = maintenance.cancel_all(type=type, org=org)
        for task_id, previous in done.canceled:
            self.stdout.write(f"canceled {task_id} (was {previous})")
        for task_id, status in done.ended:
            self.stdout.write(f"{task_id} had already ended ({status})")
        for task_id in done.busy:
            self.stdout.write(f"{task_id} not canceled: held by another transaction; run again")
        self.stdout.write(
            f"canceled {tasks(len(done.canceled), type)}{of_org}, with their unfinished dependents"
            + (f"; {len(done.ended)} had already ended" if done.ended else "")
            + (f"; {len(done.busy)} busy" if done.busy else "")
        )
        if done.busy:
            raise CommandError(f"{len(done.busy)} task(s) held by another transaction were not canceled; run again")

    def handle_stats(self, **options: Any) -> None:
        heartbeat = tasking().heartbeat
        figures = maintenance.stats(heartbeat=heartbeat)
        statuses = list(Task.Status.values)
        types = sorted({type_ for type_, _ in figures.counts})
        header = ("type", *statuses, "total")
        counts = [[figures.counts.get((type_, status), 0) for status in statuses] for type_ in types]
        rows = [(type_, *row, sum(row)) for type_, row in zip(types, counts, strict=True)]
        column_totals = [sum(column) for column in zip(*counts, strict=True)] if counts else [0] * len(statuses)
        totals = ("total", *column_totals, sum(column_totals))
        table = [tuple(str(cell) for cell in row) for row in (header, *rows, totals)]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        for row in table:
            cells = [
                row[0].ljust(widths[0]),
                *(cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)),
            ]
            self.stdout.write("  ".join(cells))
        oldest = figures.oldest_pending
        if oldest is None:
            self.stdout.write("oldest pending: -")
        else:
            waiting = f", waiting for {oldest.dependencies_left} dependencies" if oldest.dependencies_left else ""
            age = f"{duration(oldest.age)} ago{waiting}"
            self.stdout.write(f"oldest pending: {oldest.id} {oldest.type} queued {iso(oldest.queued_at)} ({age})")
        processes: dict[str, int] = {}
        for task in figures.live:
            processes[task.worker or "-"] = processes.get(task.worker or "-", 0) + 1
        self.stdout.write(f"runworkers processes running tasks (host:pid): {len(processes)}")
        for worker, count in sorted(processes.items()):
            self.stdout.write(f"  {worker}  {count} running")
        live = f"running with a live heartbeat (younger than TASKING_HEARTBEAT, {duration(heartbeat)})"
        self.write_running(live, figures.live)
        if figures.stale:
            self.write_running(
                "running with a stale heartbeat (a dead or stalled worker: a pool requeues them)", figures.stale
            )

    def write_running(self, label: str, running: list[maintenance.RunningTask]) -> None:
        self.stdout.write(f"{label}: {len(running)}")
        for task in running:
            self.stdout.write(
                f"  {task.id}  {task.type}  org {task.org_id or '-'}  started {iso(task.started_at)}"
                f"  beat {task.heartbeat_age:.1f}s ago  by {task.worker or '-'}"
            )
