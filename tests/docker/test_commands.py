"""The image's commands run outside a container, as its ENTRYPOINT, CMD and HEALTHCHECK run
them, with its ENV and its build step, on 127.0.0.1: `migrate` on a new database, then `api`
and `worker` as compose starts them, and the health checks of both, through an outage."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from tests.docker.dockerfile import build_step, environment, exec_form
from tests.helpers import ROOT, database_url, kill_left_running, wait_until

ENTRYPOINT = exec_form("ENTRYPOINT")
HEALTHCHECK = exec_form("HEALTHCHECK")
IMAGE_DATA = "/var/lib/content-sources"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(django_db_setup):
    """An autocommit session on the test server, outside the test database."""
    params = connection.get_connection_params()
    for key in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(key, None)
    with psycopg.connect(autocommit=True, **{**params, "dbname": "postgres"}) as conn:
        yield conn


@pytest.fixture
def new_database(server):
    """A database of its own, empty as compose's first `up` finds it; dropped at the end."""
    name = f"{connection.settings_dict['NAME']}_image"
    server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    server.execute(f'CREATE DATABASE "{name}"')
    yield name
    server.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def image_env(new_database, tmp_path):
    """The container's environment: the image's ENV with its data folder and /tmp mapped into
    tmp_path, and what compose adds (DATABASE_URL); the API on a free port of 127.0.0.1."""
    (tmp_path / "data").mkdir()
    places = {IMAGE_DATA: str(tmp_path / "data"), "/tmp": str(tmp_path)}
    env = {
        name: re.sub(r"(/var/lib/content-sources|/tmp)(?=/)", lambda match: places[match.group()], value)
        for name, value in environment().items()
    }
    return {
        **env,
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DATABASE_URL": database_url().rsplit("/", 1)[0] + "/" + new_database,
        "HOST": "127.0.0.1",
        "PORT": str(free_port()),
        "WEB_CONCURRENCY": "1",
    }


@pytest.fixture
def start(image_env, tmp_path):
    """Start the image's entrypoint with a command, in the background; SIGKILLed at the end."""
    processes: list[subprocess.Popen] = []

    def run(*command: str) -> subprocess.Popen:
        log = (tmp_path / f"{command[0]}.log").open("w")
        process = subprocess.Popen(
            [*ENTRYPOINT, *command], cwd="/", env=image_env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        process.log = lambda: (tmp_path / f"{command[0]}.log").read_text()
        processes.append(process)
        return process

    yield run
    kill_left_running(processes)


def get(env: dict[str, str], path: str) -> tuple[int, bytes, str]:
    url = f"http://127.0.0.1:{env['PORT']}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers["Content-Type"]


def answers(env: dict[str, str]) -> bool:
    try:
        get(env, "/healthz")
    except OSError:
        return False
    return True


def healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(HEALTHCHECK, cwd="/", env=env, capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module", autouse=True)
def static_files():
    """The Dockerfile's collectstatic step, with its build-time settings (no database)."""
    env, argv = build_step("collectstatic")
    result = subprocess.run(
        argv,
        cwd=ROOT,
        env={**environment(), **env, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.timeout(120)
def test_migrate_then_api_and_worker_serve_as_compose_starts_them(start, image_env, new_database, server, tmp_path):
    migrate = start("migrate")
    assert migrate.wait(timeout=60) == 0, migrate.log()
    # No SECRET_KEY given: the first container made one in the data folder, for all of them.
    key_file = Path(image_env["SECRET_KEY_FILE"])
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_text()
    assert len(key.strip()) >= 50

    api = start(*exec_form("CMD"))  # `api`, the image's default command
    worker = start("worker", "--workers", "2")
    # Any other command runs as is, with the same settings: a task for the worker.
    enqueue = subprocess.run(
        [*ENTRYPOINT, "python", "manage.py", "tasks", "enqueue", "diagnostics.noop"],
        cwd="/",
        env=image_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert enqueue.returncode == 0, enqueue.stderr
    task_id = uuid.UUID(re.search(r"[0-9a-f-]{36}", enqueue.stdout).group())
    wait_until(lambda: answers(image_env) or api.poll() is not None, timeout=30, message="the API to answer")
    assert api.poll() is None, api.log()
    status, body, _ = get(image_env, "/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    status, body, content_type = get(image_env, "/static/admin/css/base.css")  # WhiteNoise
    assert (status, content_type.split(";")[0]) == (200, "text/css")
    assert body == (ROOT / "staticfiles" / "admin" / "css" / "base.css").read_bytes()

    # The worker ran the task; its health file tells it is alive.
    wait_until(lambda: "pool started" in worker.log() or worker.poll() is not None, timeout=30, message="the pool")
    assert worker.poll() is None, worker.log()
    with psycopg.connect(image_env["DATABASE_URL"], autocommit=True) as app_db:
        wait_until(
            lambda: app_db.execute("SELECT status FROM tasks WHERE id = %s", [task_id]).fetchone()[0] == "completed",
            timeout=30,
            message="the worker to run the task",
        )
    wait_until(lambda: healthcheck(image_env).returncode == 0, timeout=10, message="the worker to be healthy")
    # The API's container has a /tmp of its own, without the worker's file.
    api_env = {**image_env, "WORKER_HEALTH_FILE": str(tmp_path / "api" / "runworkers.alive")}
    assert healthcheck(api_env).returncode == 0
    assert key_file.read_text() == key  # the later containers kept the first one's key

    # The database refuses connections: /healthz says 503 and the check fails, with the reason.
    server.execute(f'ALTER DATABASE "{new_database}" ALLOW_CONNECTIONS false')
    server.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [new_database])
    status, body, _ = get(image_env, "/healthz")
    assert (status, json.loads(body)) == (503, {"status": "unavailable"})
    unhealthy = healthcheck(api_env)
    assert unhealthy.returncode == 1
    assert unhealthy.stderr.strip().endswith("/healthz answered 503")
    server.execute(f'ALTER DATABASE "{new_database}" ALLOW_CONNECTIONS true')
    wait_until(lambda: get(image_env, "/healthz")[0] == 200, timeout=15, message="the API to recover")

    # `docker stop`: SIGTERM, and both exit 0 within the grace period.
    for process in (api, worker):
        process.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0, worker.log()
    assert api.wait(timeout=15) == 0, api.log()
    assert healthcheck(api_env).returncode == 1  # nothing answers any more


def test_the_entrypoint_refuses_to_start_without_a_database_url(tmp_path):
    result = subprocess.run(
        [*ENTRYPOINT, "api"],
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 64
    assert result.stderr.startswith("entrypoint: DATABASE_URL is not set.")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("touched", "problem"),
    [(0, r"the worker pool has not reported itself alive yet"), (-600, r"last reported itself alive 60\ds ago")],
    ids=["never", "stale"],
)
def test_the_health_check_of_a_worker_reads_the_age_of_its_file(tmp_path, touched, problem):
    health_file = tmp_path / "runworkers.alive"
    health_file.touch()
    when = touched if touched == 0 else time.time() + touched
    os.utime(health_file, (when, when))
    result = healthcheck(
        {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "WORKER_HEALTH_FILE": str(health_file)}
    )
    assert result.returncode == 1
    assert re.fullmatch(f"unhealthy: .*{problem}", result.stderr.strip()), result.stderr
