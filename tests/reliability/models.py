"""The ledger: one row per run of a task, written by the suite's handlers themselves.

The checks read it instead of logs. Times are `time.time()` of the worker (the suite runs on
one host, so one clock); no foreign key to `tasks`, so that a ledger write takes no lock that
the queue's statements could wait on.
"""

from django.db import models


class LedgerEntry(models.Model):
    task_id = models.UUIDField(db_index=True)
    pid = models.IntegerField()
    thread = models.CharField(max_length=64)
    started = models.FloatField()
    # When the handler stopped running: returned, raised, or crashed its process on purpose.
    # NULL when the process was killed from outside: the kill time is then the run's end.
    ended = models.FloatField(null=True)

    class Meta:
        db_table = "reliability_ledger"

    def __str__(self) -> str:
        return f"run of {self.task_id} in pid {self.pid}"
