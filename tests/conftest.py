import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

import tests.handlers  # noqa: F401  (registers the test task types)
from tasks import registry
from tasks.conf import tasking
from tasks.pool import WorkerPool
from tests.handlers import recorder

ROOT = Path(__file__).resolve().parent.parent


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.01, message: str = "condition"):
    """Poll `predicate` until it returns a true value, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


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
        wait_until(pool.listener.subscribed.is_set, message="the listener to subscribe")
        return pool

    yield start
    for pool in pools:
        pool.stop(grace=2.0)


def database_url() -> str:
    """A DATABASE_URL for the test database, for subprocesses."""
    s = connection.settings_dict
    host = quote(s["HOST"] or "localhost", safe="")
    auth = quote(s["USER"], safe="") + (":" + quote(s["PASSWORD"], safe="") if s["PASSWORD"] else "")
    port = f":{s['PORT']}" if s["PORT"] else ""
    return f"postgres://{auth}@{host}{port}/{s['NAME']}"


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
        wait_until(lambda: "pool started" in process.log() or process.poll() is not None, timeout=30,
                   message="runworkers to start")
        assert process.poll() is None, process.log()
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
