"""Factories for the task tables, for putting rows in a given state directly."""

import datetime
import uuid

import factory
from django.utils import timezone

from tasks.models import Heartbeat, Task


class TaskFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Task

    type = "diagnostics.noop"
    payload = factory.LazyFunction(dict)
    status = Task.Status.PENDING
    queued_at = factory.LazyFunction(timezone.now)
    org_id = "1234"

    class Params:
        running = factory.Trait(
            status=Task.Status.RUNNING,
            token=factory.LazyFunction(uuid.uuid4),
            started_at=factory.LazyAttribute(lambda task: task.queued_at),
        )
        failed = factory.Trait(
            status=Task.Status.FAILED,
            token=factory.LazyFunction(uuid.uuid4),
            started_at=factory.LazyAttribute(lambda task: task.queued_at),
            finished_at=factory.LazyAttribute(lambda task: task.queued_at + datetime.timedelta(seconds=1)),
            error="RuntimeError: boom",
        )


class HeartbeatFactory(factory.django.DjangoModelFactory):
    """The heartbeat of a running task, `age` seconds old."""

    class Meta:
        model = Heartbeat
        exclude = ["age"]

    task = factory.SubFactory(TaskFactory, running=True)
    token = factory.LazyAttribute(lambda beat: beat.task.token)
    age = 0
    heartbeat = factory.LazyAttribute(lambda beat: timezone.now() - datetime.timedelta(seconds=beat.age))
