"""Bench task types, registered by the tasks app's autodiscovery of `handlers` modules."""

import time

from bench.benchapp.models import Pickup
from tasks.registry import handler


@handler("bench.pickup")
def pickup(context):
    """Record when the handler's body starts: the end of the pickup latency.

    The clock is read first; the INSERT that stores it comes after and is not measured.
    """
    started = time.time()
    Pickup.objects.create(task_id=context.task.id, started=started)
