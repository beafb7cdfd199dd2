import dataclasses
import os
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest
from django.db import connection

import tests.handlers  # noqa: F401  (registers the test task types)
from tasks import registry
from tasks.conf import tasking
from tasks.pool import WorkerPool
from tests.handlers import recorder
from tests.helpers import ROOT, database_url, kill_left_running, wait_until

# How long a test's threads and database sessions may take to end after it.
LEAK_GRACE = 5.0


@pytest.fixture(scope="session")
def _watch_params(django_db_setup) -> dict:
    """How to connect to the test database (django_db_setup made it), to list the sessions on it."""
    params = connection.get_connection_params()
    for key in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(key, None)
    return params


def _sessions(params: dict) -> set[int]:
    """Backend pids of the sessions on the test database, but this thread's Django one.

    A connection of its own each time: some tests terminate every session of the database.
    """
    own = connection.connection.info.backend_pid if connection.connection is not None else 0
    with psycopg.connect(autocommit=True, **params) as watch:
        rows = watch.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid NOT IN (pg_backend_pid(), %s)",
            [own],
        ).fetchall()
    return {pid for (pid,) in rows}


def _children() -> set[int]:
    """Pids of this process's live child processes (none known where /proc is missing)."""
    children: set[int] = set()
    for path in Path("/proc/self/task").glob("*/children"):
        children.update(int(pid) for pid in path.read_text().split())
    return {pid for pid in children if Path(f"/proc/{pid}/stat").exists() and " Z " not in _stat(pid)}


def _stat(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return " Z "  # gone meanwhile


def _leaks(params: dict, threads: set, sessions: set[int], children: set[int]) -> list[str]:
    """What was left behind, after waiting up to LEAK_GRACE for it to end."""
    found: list[str] = []

    def check() -> bool:
        found.clear()
        if extra := set(threading.enumerate()) - threads:
            found.append(f"threads running: {', '.join(sorted(thread.name for thread in extra))}")
        if extra_children := _children() - children:
            found.append(f"child processes alive: {sorted(extra_children)}")
        if extra_sessions := _sessions(params) - sessions:
            found.append(f"database sessions open: {sorted(extra_sessions)}")
        return not found

    try:
        wait_until(check, timeout=LEAK_GRACE, message="what the test started to end")
    except AssertionError:
        pass
    return found


@pytest.fixture(scope="session", autouse=True)
def _no_leaks_in_the_session(_watch_params):
    """Fail the run when fixtures wider than a test leave something behind at its end."""
    before = set(threading.enumerate()), _sessions(_watch_params), _children()
    yield
    if left := _leaks(_watch_params, *before):
        pytest.fail(f"the test session left {'; '.join(left)}")


@pytest.fixture(autouse=True)
def _no_leaks(_watch_params):
    """Fail a test that leaves a thread running, a child process alive or a database session
    open behind it. Set up before the test's other fixtures, so checked after their teardown.
    """
    before = set(threading.enumerate()), _sessions(_watch_params), _children()
    yield
    if left := _leaks(_watch_params, *before):
        pytest.fail(f"the test left {'; '.join(left)}")


@pytest.fixture(autouse=True)
def _reset_recorder():
    recorder.reset()
    yield
    # Open every gate so that no handler thread outlives its test.
    for gate in list(recorder.gates.values()):
        gate.set()


@pytest.fixture
def tasking_settings(settings):
    """Fast heartbeats for tests: beat every ~0.33 s, rescue after 1 s."""
    settings.TASKING = {**settings.TASKING, "HEARTBEAT": 1.0, "SHUTDOWN_GRACE": 2.0}
    return settings


@pytest.fixture
def start_pool(transactional_db, tasking_settings):
    """Start worker pools in this process; each is stopped at the end of the test."""
    pools = []

    def start(workers: int = 3, types=None, **conf):
        pool = WorkerPool(
            workers=workers,
            types=types or registry.types(),
            conf=dataclasses.replace(tasking(), **conf),
        )
        pool.start()
        pools.append(pool)
        if pool.listener is not None:
            wait_until(pool.listener.subscribed.is_set, message="the listener to subscribe")
        return pool

    yield start
    for pool in pools:
        pool.stop(grace=2.0)


@pytest.fixture
def runworkers(transactional_db, tmp_path):
    """Start `manage.py runworkers` processes on the test database; all are killed at the end.

    Each process's output goes to a file, `process.log_path`, read with `process.log()`.
    """
    processes = []

    def start(*args: str, heartbeat: str = "1s", **env: str) -> subprocess.Popen:
        log_path = tmp_path / f"runworkers-{len(processes)}.log"
        log_file = log_path.open("w")
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runworkers", *args],
            cwd=ROOT,
            env={
                **os.environ,
                "DATABASE_URL": database_url(),
                "TASKING_HEARTBEAT": heartbeat,
                "SECRET_KEY": "test",
                "PYTHONUNBUFFERED": "1",
                **env,
            },
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        log_file.close()
        process.log_path = log_path
        process.log = log_path.read_text
        processes.append(process)
        wait_until(
            lambda: "pool started" in process.log() or process.poll() is not None,
            timeout=30,
            message="runworkers to start",
        )
        assert process.poll() is None, process.log()
        return process

    yield start
    kill_left_running(processes)
