"""The admin inspects tasks; it never edits them.

State transitions belong to `tasks.queue` (see tasks/models.py), so the admin is view-only:
no add, change or delete. Its one write is the "Cancel selected tasks" action, which goes
through `tasks.client.cancel` like the API. The changelist costs the same however long the
history grows: no count (the paginator looks one page ahead), exact-match search and filters
on indexes, a type filter from the registry instead of a DISTINCT over the table.
"""

import uuid
from datetime import datetime
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.options import ShowFacets
from django.contrib.admin.views.main import PAGE_VAR
from django.core.paginator import Paginator
from django.db.models import Model, OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from tasks import client, queue, registry
from tasks.exceptions import TaskError
from tasks.models import Heartbeat, Task

LINKED_TASKS_SHOWN = 100
# The deepest page the changelist reads: an offset reads every row before it; past this, a
# filter finds what paging would not.
MAX_PAGE = 100


def task_link(task_id: uuid.UUID) -> SafeString:
    return format_html('<a href="{}">{}</a>', reverse("admin:tasks_task_change", args=[task_id]), task_id)


def linked_tasks(tasks: QuerySet[Task]) -> str:
    """Links to the first LINKED_TASKS_SHOWN tasks with their status, one a line."""
    rows = list(tasks.order_by("queued_at", "id").values_list("id", "status")[: LINKED_TASKS_SHOWN + 1])
    if not rows:
        return "-"
    links = ((task_link(id), status) for id, status in rows[:LINKED_TASKS_SHOWN])
    shown = format_html_join(mark_safe("<br>"), "{} ({})", links)
    if len(rows) > LINKED_TASKS_SHOWN:
        return format_html("{}<br>and more", shown)
    return shown


class LookAheadPaginator(Paginator[Any]):
    """Counts the rows up to the end of the page after the one shown, never the whole
    selection: COUNT(*) reads every row it counts, and the history only grows."""

    def __init__(self, queryset: QuerySet[Any], per_page: int, *, page_number: int):
        super().__init__(queryset, per_page)
        self.queryset = queryset
        self.page_number = page_number

    @cached_property
    def count(self) -> int:
        if self.page_number > MAX_PAGE:
            return 0  # the changelist then says the page does not exist
        offset = (self.page_number - 1) * self.per_page
        ahead = self.queryset[offset : offset + self.per_page + 1].values_list("pk", flat=True)
        return offset + len(ahead)


class ReadOnlyAdmin[M: Model](admin.ModelAdmin[M]):
    """View-only: the view permission alone shows the change page, with every field read-only.
    Granting change would let a POST of that page save the row through the ORM.
    """

    show_full_result_count = False
    show_facets = ShowFacets.NEVER  # facet counts would read every matching row
    list_max_show_all = 0  # "show all" would list the whole history
    actions_selection_counter = False  # "0 of N selected" and "select all N" need the count

    def get_paginator(
        self,
        request: HttpRequest,
        queryset: QuerySet[M],
        per_page: int,
        orphans: int = 0,
        allow_empty_first_page: bool = True,
    ) -> Paginator[Any]:
        try:
            page_number = max(1, int(request.GET.get(PAGE_VAR, 1)))
        except ValueError:
            page_number = 1
        return LookAheadPaginator(queryset, per_page, page_number=page_number)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class OrgFilter(admin.SimpleListFilter):
    """The organisations that have tasks, found one index descent each (queue.orgs)."""

    title = "org"
    parameter_name = "org"
    shown = 200

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(org, org) for org in queue.orgs(self.shown)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(org_id=self.value()) if self.value() else queryset


class TypeFilter(admin.SimpleListFilter):
    """The registered types: listing the types in the table would scan all of it."""

    title = "type"
    parameter_name = "type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(type, type) for type in registry.types()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(type=self.value()) if self.value() else queryset


@admin.register(Task)
class TaskAdmin(ReadOnlyAdmin[Task]):
    list_display = [
        "id",
        "type",
        "status",
        "org_id",
        "object",
        "priority",
        "retries",
        "queued_at",
        "started_at",
        "finished_at",
        "heartbeat_age",
    ]
    list_filter = ["status", TypeFilter, OrgFilter]
    search_fields = ["id__exact", "org_id__exact", "request_id__exact", "object_uuid__exact"]
    search_help_text = "An exact task id, org id, request id or object uuid."
    ordering = ["-queued_at"]
    fieldsets = [
        (None, {"fields": ["id", "type", "status", "priority", "payload", "error"]}),
        ("Owner", {"fields": ["org_id", "account_id", "object_type", "object_uuid", "request_id"]}),
        ("Times", {"fields": ["queued_at", "started_at", "finished_at"]}),
        ("Run", {"fields": ["token", "retries", "next_retry_time", "cancel_attempted"]}),
        ("Dependencies", {"fields": ["dependencies_left", "dependency_links", "dependent_links"]}),
    ]
    # Every field, should the change permission ever be granted.
    readonly_fields = [name for _, options in fieldsets for name in options["fields"] if isinstance(name, str)]
    actions = ["cancel_tasks", "requeue_failed_tasks"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Task]:
        last_beat = Heartbeat.objects.filter(task_id=OuterRef("pk")).order_by("-heartbeat").values("heartbeat")[:1]
        return super().get_queryset(request).annotate(last_heartbeat=Subquery(last_beat))

    @admin.display(description="object")
    def object(self, task: Task) -> str:
        return f"{task.object_type} {task.object_uuid}" if task.object_uuid else "-"

    @admin.display(description="heartbeat age")
    def heartbeat_age(self, task: Task) -> str:
        last: datetime | None = getattr(task, "last_heartbeat", None)
        return "-" if last is None else f"{(timezone.now() - last).total_seconds():.0f}s"

    @admin.display(description="dependencies")
    def dependency_links(self, task: Task) -> str:
        return linked_tasks(task.dependencies.all())

    @admin.display(description="dependents")
    def dependent_links(self, task: Task) -> str:
        return linked_tasks(task.dependents.all())

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        # Cancelling writes, so it takes the change permission that the admin itself never uses.
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    @admin.action(description="Requeue selected failed tasks", permissions=["cancel"])
    def requeue_failed_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        """Through the queue, as a retry would, but at once and with its retries given back."""
        requeued = 0
        for task_id in queryset.values_list("id", flat=True):
            try:
                previous = queue.requeue_failed(task_id)
            except TaskError as exc:
                self.message_user(request, f"Task {task_id} was not requeued: {exc}.", messages.ERROR)
                continue
            if previous == Task.Status.FAILED:
                requeued += 1
            else:
                self.message_user(request, f"Task {task_id} was not requeued: it is {previous}.", messages.WARNING)
        if requeued:
            self.message_user(request, f"Requeued {requeued} failed task(s).", messages.SUCCESS)

    @admin.action(description="Cancel selected tasks", permissions=["cancel"])
    def cancel_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        canceled = 0
        # Failed tasks waiting for their automatic retry: the cancel drops the retry.
        retrying = set(
            queryset.filter(status=Task.Status.FAILED, next_retry_time__isnull=False).values_list("id", flat=True)
        )
        for task_id in queryset.values_list("id", flat=True):
            try:
                previous = client.cancel(task_id)
            except TaskError as exc:
                self.message_user(request, f"Task {task_id}: {exc}", messages.ERROR)
                continue
            if previous in (Task.Status.PENDING, Task.Status.RUNNING):
                canceled += 1
            elif previous == Task.Status.FAILED and task_id in retrying:
                message = f"Task {task_id} had failed and waited for its automatic retry: it will not be retried."
                self.message_user(request, message, messages.SUCCESS)
            else:
                message = f"Task {task_id} had already finished ({previous}); marked cancel_attempted."
                self.message_user(request, message, messages.WARNING)
        if canceled:
            self.message_user(request, f"Canceled {canceled} task(s).", messages.SUCCESS)


@admin.register(Heartbeat)
class HeartbeatAdmin(ReadOnlyAdmin[Heartbeat]):
    list_display = ["token", "task_id_link", "heartbeat"]
    ordering = ["heartbeat"]

    @admin.display(description="task id")
    def task_id_link(self, heartbeat: Heartbeat) -> SafeString:
        return task_link(heartbeat.task_id)
