"""tasks_status_queued_idx leaves pending tasks out, so that the claim's plan reaches them only
through tasks_ready_idx and the primary key (tasks/sql/queries.sql, claim). Rebuilt
concurrently: the table may be large and in use."""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("tasks", "0003_held_ends_and_retried_keys"),
    ]

    operations = [
        RemoveIndexConcurrently(
            model_name="task",
            name="tasks_status_queued_idx",
        ),
        AddIndexConcurrently(
            model_name="task",
            index=models.Index(
                models.F("status"),
                models.OrderBy(models.F("queued_at"), descending=True),
                condition=models.Q(("status", "pending"), _negated=True),
                name="tasks_status_queued_idx",
            ),
        ),
    ]
