"""SCALE: DRAIN on a table with a long history and blocked tasks, from 1 to 16 workers.

Neither the million finished rows nor the tasks blocked behind an unfinished dependency may
cost anything per claim; the 8-worker point is compared with DRAIN 1x8 on an empty table.
"""

from django.db import connection

from bench import fixtures
from bench.config import Bench
from bench.workloads.drain import drain_once, summarize


def run(bench: Bench) -> dict:
    sizes = bench.sizes
    fixtures.reset()
    fixtures.fill_history(sizes.scale_history)
    _, blocked = fixtures.queue_blocked(sizes.scale_blocked)
    fixtures.analyze()
    curve = {}
    for workers in sizes.scale_curve:
        runs = [drain_once(bench, processes=1, workers=workers, tasks=sizes.drain_tasks) for _ in range(sizes.runs)]
        curve[str(workers)] = summarize(runs)
    check_still_blocked(blocked)
    fixtures.reset()
    return {"history": sizes.scale_history, "blocked": sizes.scale_blocked, "curve": curve}


def check_still_blocked(blocked: list) -> None:
    """The blocked tasks must still be waiting: a pool that ran one broke the dependencies."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM tasks WHERE id = ANY(%s) AND status = 'pending' AND dependencies_left = 1",
            [list(blocked)],
        )
        waiting = cursor.fetchone()[0]
    if waiting != len(blocked):
        raise RuntimeError(f"{len(blocked) - waiting} of {len(blocked)} blocked tasks ran or changed")
