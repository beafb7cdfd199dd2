"""`manage.py serve` (what `make run` runs) as real processes on 127.0.0.1: gunicorn answers
/healthz, the API and the admin, the pool runs a task, and no child outlives the command,
however it ends."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from contentsources.api.identity import encode_identity
from contentsources.management.commands.serve import Command
from tasks import client
from tasks.models import Task
from tests.helpers import ROOT, database_url, kill_left_running, wait_until

# The pool's grace in these tests; how long a stop may take beyond it.
GRACE = 2
STOP_BOUND = GRACE + 8.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(base: str, path: str, **headers: str) -> tuple[int, bytes]:
    request = urllib.request.Request(base + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def descendants(pid: int) -> set[int]:
    """The live processes under `pid`, children of children included."""
    found: set[int] = set()
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children = [int(child) for child in path.read_text().split()]
        except OSError:
            continue
        for child in children:
            found |= {child, *descendants(child)}
    return {child for child in found if alive(child)}


def alive(pid: int) -> bool:
    """Running, neither gone nor a zombie waiting for its new parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "SECRET_KEY": "test",
        "TASKING_HEARTBEAT": "1s",
        "TASKING_SHUTDOWN_GRACE": f"{GRACE}s",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


@pytest.fixture
def serve(transactional_db, tmp_path):
    """Start `manage.py serve` on a free port and wait until both children answer; the command
    and whatever it started are killed at the end."""
    processes: list[subprocess.Popen] = []
    started: set[int] = set()

    def start() -> subprocess.Popen:
        log_path = tmp_path / f"serve-{len(processes)}.log"
        with log_path.open("w") as log_file:
            process = subprocess.Popen(
                [sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{free_port()}", "--web-workers", "1"],
                cwd=ROOT,
                env=env(),
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        processes.append(process)
        process.log = log_path.read_text
        process.base = "http://" + wait_until(
            lambda: _bound(process.log()) or process.poll() is not None, timeout=30, message="serve to start"
        )
        wait_until(
            lambda: (
                (get(process.base, "/healthz")[0] == 200 and "pool started" in process.log())
                or process.poll() is not None
            ),
            timeout=30,
            message="gunicorn and the pool to start",
        )
        assert process.poll() is None, process.log()
        started.update(descendants(process.pid))
        return process

    yield start
    kill_left_running(processes)
    for pid in started:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def _bound(log: str) -> str | None:
    line = next((line for line in log.splitlines() if line.startswith("serving on http://")), None)
    return line.removeprefix("serving on http://").rstrip("/") if line else None


def test_it_serves_the_api_and_the_admin_runs_tasks_and_stops_on_sigterm(serve):
    process = serve()
    status, body = get(process.base, "/healthz")
    assert status == 200, body
    status, body = get(
        process.base, "/api/content-sources/v1/tasks/", **{"x-rh-identity": encode_identity(org_id="o1")}
    )
    assert status == 200, body
    assert json.loads(body)["meta"]["count"] == 0
    status, body = get(process.base, "/admin/login/")
    assert status == 200 and b'name="password"' in body, body[:500]
    task_id = client.enqueue("diagnostics.noop")
    wait_until(
        lambda: Task.objects.filter(pk=task_id, status=Task.Status.COMPLETED).exists(),
        timeout=15,
        message="the pool to run the task",
    )
    children = descendants(process.pid)
    assert len(children) >= 3, children  # gunicorn, its worker, runworkers
    signaled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=STOP_BOUND) == 0, process.log()
    assert time.monotonic() - signaled < STOP_BOUND
    assert process.log().rstrip().endswith("stopped"), process.log()
    assert not {pid for pid in children if alive(pid)}


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGHUP], ids=["SIGKILL", "SIGHUP"])
def test_no_child_outlives_serve(serve, signum):
    process = serve()
    children = descendants(process.pid)
    assert len(children) >= 3, children
    process.send_signal(signum)
    process.wait(timeout=STOP_BOUND)
    wait_until(
        lambda: not {pid for pid in children if alive(pid)},
        timeout=STOP_BOUND,
        message=f"the children to stop after {signal.Signals(signum).name}",
    )


def test_a_busy_port_is_a_one_line_error_before_anything_starts(transactional_db):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"CommandError: --bind 127.0.0.1:{port}: cannot listen there: Address already in use" in (
        result.stderr.splitlines()
    )
    assert "Traceback" not in result.stderr
    assert "serving on" not in result.stdout


def test_a_malformed_bind_is_refused(db):
    with pytest.raises(CommandError, match="--bind must be HOST:PORT"):
        call_command("serve", "--bind", "8000")


def test_the_demo_admin_is_a_superuser_who_can_log_in(db, client, capsys):
    # An `admin` left by an earlier demo without the rights (or deactivated) gets them back.
    get_user_model().objects.create_user("admin", is_staff=False, is_superuser=False, is_active=False)
    command = Command()
    command._demo_admin()
    password = capsys.readouterr().out.split("password: ")[1].split()[0]
    user = get_user_model().objects.get(username="admin")
    assert (user.is_active, user.is_staff, user.is_superuser) == (True, True, True)
    response = client.post("/admin/login/?next=/admin/", {"username": "admin", "password": password})
    assert (response.status_code, response["Location"]) == (302, "/admin/")
    assert client.get("/admin/tasks/task/").status_code == 200
