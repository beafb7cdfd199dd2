"""Latency of `GET /api/content-sources/v1/tasks/` (a page of 100) with 100,000 tasks in the table.

Usage: DATABASE_URL=... .venv/bin/python bench/api_tasks.py [--tasks N] [--requests N]
       [--scenario visible|sparse ...] [--explain] [--json PATH]

In a database of its own (`bench_api`, dropped and created afresh, migrated, dropped at the
end), on DATABASE_URL's server or the embedded one. It inserts the tasks in SQL (95% finished,
the rest failed, pending or running; half of them snapshots that depend on the introspection
before them, every one about a repository configuration of its organisation), VACUUM ANALYZEs, then
sends the requests one after another through Django's WSGI handler, in this process, as gunicorn
calls it for an organisation: the full stack (middleware, identity, DRF, serializers) but the
socket; in a process started as contentsources/wsgi.py starts one (the URLconf loaded, then
frozen out of the garbage collector's full collections).

Scenarios, by who owns the tasks:
  visible  the caller's organisation 90,000, Red Hat (-1) 5,000, Community (-2) 5,000: every
           task is the caller's to see (the count counts them all)
  sparse   the caller 1,000, Red Hat and Community 500 each, 98,000 of 100 other organisations

Prints p50 / p95 / p99 / max in ms per scenario, the queries per request, and with --explain
the EXPLAIN (ANALYZE, BUFFERS) of each query of one request; first, as a baseline, the same
figures for an empty page (no task at all): the framework's own cost, and the machine's noise.
"""

import argparse
import gc
import io
import json
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import import_module
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Imported once the checkout is on sys.path: the script runs from anywhere (E402).
from bench.database import BenchDatabase, Server  # noqa: E402
from bench.run import close_django, setup_django, subprocess_env  # noqa: E402
from bench.stats import percentile  # noqa: E402

CALLER = "bench-org"
PATH = "/api/content-sources/v1/tasks/"
WARM_UP = 20
# Organisations' share of the tasks, in thousandths, by scenario.
SCENARIOS = {
    "visible": {CALLER: 900, "-1": 50, "-2": 50},
    "sparse": {CALLER: 10, "-1": 5, "-2": 5, **{f"org-{n}": 9.8 for n in range(100)}},
}
# Repositories of the caller, and of each other organisation; the tasks are about them.
REPOSITORIES = {CALLER: 1000, "other": 50}

# Tasks n = 1..rows: the odd ones introspections, the even ones snapshots depending on the task
# before them; ids derived from n so that the dependencies can be inserted by n too.
TASKS = """
INSERT INTO tasks (id, type, payload, status, queued_at, started_at, finished_at, token, error, retries,
                   priority, cancel_attempted, dependencies_left, org_id, object_uuid, object_type, request_id)
SELECT md5('bench-task-' || n)::uuid,
       CASE WHEN n %% 2 = 1 THEN 'introspect' ELSE 'snapshot' END,
       '{}'::jsonb,
       state,
       at,
       CASE WHEN state <> 'pending' THEN at + interval '1 second' END,
       CASE WHEN state IN ('completed', 'failed') THEN at + interval '5 seconds' END,
       CASE WHEN state <> 'pending' THEN gen_random_uuid() END,
       CASE WHEN state = 'failed' THEN 'HTTPNotFound: 404 from https://mirror.example/repodata/repomd.xml' END,
       0, 0, false, 0, org, configuration, 'repository', 'bench-' || n
FROM (
    SELECT n, at,
           CASE WHEN n %% 100 < 95 THEN 'completed' WHEN n %% 100 < 98 THEN 'failed'
                WHEN n %% 100 < 99 THEN 'pending' ELSE 'running' END AS state,
           owners.org,
           owners.configurations[1 + (n / 2) %% array_length(owners.configurations, 1)] AS configuration
    FROM (SELECT n, now() - (%(rows)s - n) * interval '20 seconds' AS at,
                 -- the task pair's owner, drawn by weight
                 (hashtext('bench-pair-' || (n + 1) / 2) & 1023)::float / 1024 AS draw
          FROM generate_series(1, %(rows)s) AS n) AS numbered
    JOIN (SELECT c.org_id AS org, array_agg(c.uuid) AS configurations,
                 sum(o.weight) OVER (ORDER BY c.org_id) - o.weight AS low,
                 sum(o.weight) OVER (ORDER BY c.org_id) AS high
          FROM repository_configurations c
          JOIN (SELECT key AS org_id, value::float / 1000 AS weight FROM jsonb_each_text(%(weights)s::jsonb)) o
            ON o.org_id = c.org_id
          GROUP BY c.org_id, o.weight) AS owners
      ON numbered.draw >= owners.low AND numbered.draw < owners.high
) AS tasks
"""
DEPENDENCIES = """
INSERT INTO task_dependencies (task_id, dependency_id)
SELECT t.id, md5('bench-task-' || (n - 1))::uuid
FROM generate_series(2, %(rows)s, 2) AS n
JOIN tasks t ON t.id = md5('bench-task-' || n)::uuid
WHERE EXISTS (SELECT FROM tasks d WHERE d.id = md5('bench-task-' || (n - 1))::uuid AND d.org_id = t.org_id)
"""


def fill(rows: int, weights: dict[str, float]) -> dict[str, int]:
    """Empty the tables, then add each organisation's repositories and `rows` tasks; return
    how many tasks each organisation got."""
    from django.db import connection

    from repositories.models import Repository, RepositoryConfiguration

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE tasks, task_dependencies, task_heartbeats, repository_configurations, repositories CASCADE"
        )
    for org in weights:
        repositories = Repository.objects.bulk_create(
            Repository(url=f"https://mirror.example/{org}/{n}/", status="Valid", package_count=n)
            for n in range(REPOSITORIES.get(org, REPOSITORIES["other"]))
        )
        RepositoryConfiguration.objects.bulk_create(
            RepositoryConfiguration(org_id=org, name=f"repository {n}", repository=repository)
            for n, repository in enumerate(repositories)
        )
    with connection.cursor() as cursor:
        cursor.execute(TASKS, {"rows": rows, "weights": json.dumps(weights)})
        cursor.execute(DEPENDENCIES, {"rows": rows})
        cursor.execute("VACUUM ANALYZE tasks")
        cursor.execute("VACUUM ANALYZE task_dependencies")
        cursor.execute("VACUUM ANALYZE repository_configurations")
        cursor.execute("SELECT org_id, count(*) FROM tasks GROUP BY org_id")
        return dict(cursor.fetchall())


def client(org_id: str = CALLER):
    from django.test import Client

    from contentsources.api.identity import encode_identity

    # As a request through the gateway: a host the settings allow, the caller's identity.
    return Client(
        HTTP_HOST="localhost", HTTP_X_RH_IDENTITY=encode_identity(org_id=org_id, account_number="1", user="bench")
    )


def wsgi_get(org_id: str) -> Callable[[], tuple[str, bytes]]:
    """GET tasks/ as gunicorn calls the application: Django's WSGI handler, with the request
    signals (a connection checked at each request's first query) and nothing of the test
    client's (which keeps each response in reference cycles of its own)."""
    from django.core.handlers.wsgi import WSGIHandler

    from contentsources.api.identity import encode_identity

    handler = WSGIHandler()
    identity = encode_identity(org_id=org_id, account_number="1", user="bench")

    def get() -> tuple[str, bytes]:
        environ = {
            "REQUEST_METHOD": "GET", "PATH_INFO": PATH, "QUERY_STRING": "", "SERVER_NAME": "localhost",
            "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "localhost",
            "HTTP_X_RH_IDENTITY": identity, "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr,
            "wsgi.url_scheme": "http",
        }  # fmt: skip
        statuses: list[str] = []
        response = handler(environ, lambda status, headers: statuses.append(status))
        try:
            return statuses[0], b"".join(response)
        finally:
            response.close()

    return get


def measure(requests: int, org_id: str = CALLER, items: int = 100) -> dict:
    """Latencies of `requests` GET tasks/ one after another, after a warm-up, in ms."""
    get = wsgi_get(org_id)
    for _ in range(WARM_UP):
        status, body = get()
        assert status == "200 OK", body
    samples = []
    with FullCollections() as collections:
        for _ in range(requests):
            started = time.perf_counter()
            status, body = get()
            samples.append((time.perf_counter() - started) * 1000)
            assert status == "200 OK" and len(json.loads(body)["data"]) == items
    return {
        "p50": percentile(samples, 50),
        "p95": percentile(samples, 95),
        "p99": percentile(samples, 99),
        "max": max(samples),
        "requests": requests,
        "unit": "ms",
        "full_gc": len(collections.pauses),
        "longest_full_gc": max(collections.pauses, default=0.0),
    }


class FullCollections:
    """The pauses (ms) of the garbage collector's full collections while it is entered: in
    this process they are what the slowest requests wait for."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._started = 0.0

    def _callback(self, phase: str, info: dict) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((time.perf_counter() - self._started) * 1000)

    def __enter__(self) -> "FullCollections":
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


def summary(figures: dict) -> str:
    return (
        f"p50 {figures['p50']:.1f} ms, p95 {figures['p95']:.1f} ms, p99 {figures['p99']:.1f} ms, "
        f"max {figures['max']:.1f} ms ({figures['full_gc']} full GC, longest {figures['longest_full_gc']:.0f} ms)"
    )


def explain(visible: int) -> tuple[int, str]:
    """The queries of a request for the first page, and of one for the last page; the
    EXPLAIN (ANALYZE, BUFFERS) of each."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    out = []
    queries = 0
    for query_string in ("", f"?offset={max(visible - 100, 0)}"):
        with CaptureQueriesContext(connection) as captured:
            assert client().get(PATH + query_string).status_code == 200
        queries = queries or len(captured)
        with connection.cursor() as cursor:
            for query in captured.captured_queries:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + query["sql"])
                plan = "\n".join(row[0] for row in cursor.fetchall())
                out.append(f"-- GET tasks/{query_string}\n-- {query['sql']}\n{plan}\n")
    return queries, "\n".join(out)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks in the table")
    parser.add_argument("--requests", type=int, default=500, help="measured requests per scenario")
    parser.add_argument("--scenario", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--explain", action="store_true", help="print the EXPLAIN of each query of a request")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    parser.add_argument("--database", default="bench_api", help="the bench's own database (name starts with 'bench')")
    args = parser.parse_args(argv)

    server = Server.from_environment(ROOT)
    database = BenchDatabase(server, args.database)
    env = subprocess_env(database)
    database.create()
    results = {}
    try:
        database.migrate(ROOT, env)
        setup_django(env, Path(tempfile.gettempdir()) / "bench-api-tasks.log")
        from django.conf import settings
        from django.db import connection

        # As a served process starts (contentsources/wsgi.py): the URLconf loaded, then what is
        # loaded kept out of the garbage collector's full collections.
        import_module(settings.ROOT_URLCONF)
        gc.freeze()

        # The same stack answering an empty page (an organisation with no task, an empty table):
        # what the framework costs on this machine, and how noisy the machine is.
        fill(0, {"bench-empty": 1000})
        results["baseline"] = baseline = measure(args.requests, org_id="bench-empty", items=0)
        print(f"baseline: empty page, over {args.requests} requests: {summary(baseline)}", flush=True)
        for name in args.scenario:
            owners = fill(args.tasks, SCENARIOS[name])
            visible = sum(owners.get(org, 0) for org in (CALLER, "-1", "-2"))
            figures = measure(args.requests, items=min(visible, 100))
            queries, plans = explain(visible)
            figures.update(queries=queries, tasks=args.tasks, visible=visible)
            results[name] = figures
            print(
                f"{name}: {args.tasks:,} tasks, {figures['visible']:,} visible to the caller; "
                f"GET tasks/ (100 a page) over {args.requests} requests: {summary(figures)}; "
                f"{queries} queries a request",
                flush=True,
            )
            if args.explain:
                print(plans, flush=True)
        with connection.cursor() as cursor:
            cursor.execute("SELECT version()")
            version = cursor.fetchone()[0]
        print(version)
        if args.json:
            args.json.write_text(json.dumps({"results": results, "postgres": version}, indent=2))
    finally:
        close_django()
        database.drop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
