"""Where bench task types leave their measurements, outside the `tasks` table they measure."""

from django.db import models


class Pickup(models.Model):
    """When the body of a `bench.pickup` handler started, by the worker's wall clock."""

    task_id = models.UUIDField(primary_key=True)
    started = models.FloatField()  # time.time(), comparable with the client's on the same host

    class Meta:
        db_table = "bench_pickups"

    def __str__(self) -> str:
        return f"pickup of {self.task_id}"
