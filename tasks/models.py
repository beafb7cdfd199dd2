"""The task queue's tables, named as in the original service (`tasks`, `task_heartbeats`,
`task_dependencies`) so that operators' SQL and dashboards carry over.

State transitions are never made through the ORM: `tasks.queue` owns them.
"""

import uuid

from django.db import models
from django.db.models import F, Func, Q
from django.utils import timezone

NIL_UUID = uuid.UUID(int=0)
ACTIVE_STATUSES = ("pending", "running")


class NextTaskNumber(Func):
    """The next value of the sequence that numbers tasks in insertion order."""

    template = "nextval('tasks_seq')"
    output_field = models.BigIntegerField()


class Task(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        COMPLETED = "completed"
        FAILED = "failed"
        CANCELED = "canceled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    type = models.CharField(max_length=255)
    payload = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status, default=Status.PENDING)
    # The enqueue time. Unlike the original, a requeue never moves it.
    queued_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=4000, null=True, blank=True)
    org_id = models.CharField(max_length=255, null=True, blank=True)
    account_id = models.CharField(max_length=255, null=True, blank=True)
    object_uuid = models.UUIDField(null=True, blank=True)
    object_type = models.CharField(max_length=255, null=True, blank=True)
    # The lease of the current run: a new value at every dequeue, fencing every write of the run.
    token = models.UUIDField(null=True, blank=True)
    request_id = models.CharField(max_length=255, null=True, blank=True)
    retries = models.IntegerField(default=0)
    next_retry_time = models.DateTimeField(null=True, blank=True)
    priority = models.IntegerField(default=0)
    cancel_attempted = models.BooleanField(default=False)
    # How many dependencies have not completed yet. Kept by the queue so that a blocked
    # task stays out of the ready index and costs nothing to dequeue.
    dependencies_left = models.IntegerField(default=0)
    # At most one pending or running task holds a given key (client.enqueue(unique_key=...)).
    unique_key = models.CharField(max_length=255, null=True, blank=True)
    # Insertion order, assigned by the database. A task is always inserted after its
    # dependencies, so this order puts a task before its dependents: the queue locks tasks in
    # it (docs/queue.md, "Locks").
    seq = models.BigIntegerField(db_default=NextTaskNumber(), editable=False)
    dependencies = models.ManyToManyField(
        "self",
        through="TaskDependency",
        through_fields=("task", "dependency"),
        symmetrical=False,
        related_name="dependents",
        blank=True,
    )

    class Meta:
        db_table = "tasks"
        indexes = [
            # Dequeue: ready tasks of each type in pick order; blocked and finished rows are
            # not in it, and a claim reads only the types it serves.
            models.Index(
                "type",
                F("priority").desc(),
                "queued_at",
                "id",
                name="tasks_ready_idx",
                condition=Q(status="pending", dependencies_left=0),
            ),
            # Failed tasks waiting for their automatic retry.
            models.Index(
                fields=["next_retry_time"],
                name="tasks_retry_due_idx",
                condition=Q(status="failed", next_retry_time__isnull=False),
            ),
            # The admin and `manage.py tasks list`: newest first across orgs, of a status, of a type.
            models.Index(F("queued_at").desc(), name="tasks_queued_idx"),
            # Not over pending tasks: the claim must have no way to them but the ready index
            # and the primary key, even when the statistics predate a burst (queries.sql, claim).
            models.Index(
                F("status"), F("queued_at").desc(), name="tasks_status_queued_idx", condition=~Q(status="pending")
            ),
            models.Index(F("type"), F("queued_at").desc(), name="tasks_type_queued_idx"),
            # Searches by the request that enqueued a task, and by its object.
            models.Index(fields=["request_id"], name="tasks_request_id_idx"),
            models.Index(fields=["object_uuid"], name="tasks_object_uuid_idx"),
            # The user list: newest first within an org.
            models.Index(F("org_id"), F("queued_at").desc(), name="tasks_org_queued_idx"),
            # Active-task lookups by object.
            models.Index(
                fields=["org_id", "object_uuid", "object_type", "status", "type"],
                name="tasks_multi_idx",
            ),
            models.Index(fields=["account_id"], name="tasks_account_id"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(finished_at__isnull=True) | Q(started_at__isnull=False),
                name="not_finished_when_not_started",
            ),
            models.CheckConstraint(
                condition=Q(started_at__isnull=True) | Q(queued_at__lte=F("started_at")),
                name="chronologic_started_at",
            ),
            models.CheckConstraint(
                condition=Q(finished_at__isnull=True) | Q(started_at__lte=F("finished_at")),
                name="chronologic_finished_at",
            ),
            models.CheckConstraint(
                condition=Q(token__isnull=True) | ~Q(token=NIL_UUID),
                name="token_is_never_uuid_nil",
            ),
            models.CheckConstraint(
                condition=Q(started_at__isnull=True) | Q(token__isnull=False),
                name="token_is_set_when_started",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "running", "completed", "failed", "canceled"]),
                name="status_is_known",
            ),
            models.CheckConstraint(condition=Q(dependencies_left__gte=0), name="dependencies_left_not_negative"),
            # A key is held by a task that may still run: pending, running, or failed and
            # waiting for its automatic retry.
            models.UniqueConstraint(
                fields=["unique_key"],
                condition=Q(unique_key__isnull=False)
                & (Q(status__in=ACTIVE_STATUSES) | Q(status="failed", next_retry_time__isnull=False)),
                name="tasks_unique_key_active",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id} ({self.status})"


class TaskDependency(models.Model):
    """An edge: `task` runs only after `dependency` has completed."""

    pk = models.CompositePrimaryKey("task_id", "dependency_id")
    task = models.ForeignKey(Task, on_delete=models.DB_CASCADE, related_name="+", db_index=False)
    dependency = models.ForeignKey(Task, on_delete=models.DB_CASCADE, related_name="+")

    class Meta:
        db_table = "task_dependencies"
        constraints = [
            models.CheckConstraint(condition=~Q(task=F("dependency")), name="task_is_not_its_own_dependency"),
        ]

    def __str__(self) -> str:
        return f"{self.task_id} after {self.dependency_id}"


class Heartbeat(models.Model):
    """One row per running task, keyed by the run's token; a stale row means a dead worker."""

    token = models.UUIDField(primary_key=True)
    task = models.ForeignKey(Task, on_delete=models.DB_CASCADE, db_column="id", related_name="+")
    heartbeat = models.DateTimeField()
    # The `runworkers` process that runs the task, as host:pid (none when claimed outside a pool).
    worker = models.CharField(max_length=300, null=True, blank=True)  # noqa: DJ001 (none is "no process")
    # The end of a run that its stopping pool could not record (another transaction held its
    # task): {"as": "completed" | "failed", "error": ..., "requeueable": ...}, recorded by the
    # next janitor pass of any pool.
    ending = models.JSONField(null=True, blank=True)

    class Meta:
        db_table = "task_heartbeats"
        constraints = [
            models.CheckConstraint(condition=~Q(token=NIL_UUID), name="heartbeat_token_is_never_uuid_nil"),
        ]

    def __str__(self) -> str:
        return f"heartbeat of {self.task_id} at {self.heartbeat}"


class TaskStats(models.Model):
    """The table's statistics as one pool last took them (tasks.queue.refresh_stats), for the
    `/metrics` of every process: one row, replaced at each refresh."""

    id = models.SmallIntegerField(primary_key=True, default=1)
    taken_at = models.DateTimeField()
    # [{"status", "type", "count", "ready", "wait_sum", "oldest_wait"}]: one entry per status and
    # type; for pending tasks, how many are ready and their waits in seconds since queued_at.
    stats = models.JSONField()

    class Meta:
        db_table = "task_stats"

    def __str__(self) -> str:
        return f"task statistics of {self.taken_at}"
