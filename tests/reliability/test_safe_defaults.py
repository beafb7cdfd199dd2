"""The issue's safe defaults: no secret shipped (a missing SECRET_KEY is a clear start-up
error), DEBUG off unless asked for, the embedded database on a Unix socket only, and no URL
password in the logs of a task's error."""

import os
import subprocess
import sys

import pytest

from tasks import client
from tasks.models import Task
from tests.helpers import ROOT, wait_until

A_SERVER = "postgres://app@db.example:5432/app"  # never reached: settings fail or suffice first


def manage_with(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """manage.py with the project's own settings, in an environment of PATH and `env` only."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_missing_secret_key_is_a_one_line_start_up_error():
    result = manage_with({"DATABASE_URL": A_SERVER}, "check")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize(("debug", "expected"), [(None, "False"), ("true", "True")], ids=["unset", "asked-for"])
def test_debug_is_off_unless_asked_for(debug, expected):
    env = {"DATABASE_URL": A_SERVER, "SECRET_KEY": "x" * 50, **({"DEBUG": debug} if debug else {})}
    result = manage_with(env, "shell", "-c", "from django.conf import settings; print(settings.DEBUG)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == expected


def test_the_embedded_database_listens_on_a_unix_socket_only(throwaway_postgres):
    with throwaway_postgres.connect() as conn:
        listen_addresses = conn.execute("SHOW listen_addresses").fetchone()[0]
        socket_directories = conn.execute("SHOW unix_socket_directories").fetchone()[0]
    assert listen_addresses == ""
    assert socket_directories == throwaway_postgres.socket_dir


def test_a_url_password_in_a_task_error_never_reaches_the_logs(fleet):
    pools = fleet("--workers", "1")
    process = pools.start()
    message = "cannot fetch https://user:s3cr3t-pw@mirror.example/repo/"
    task_id = client.enqueue("diagnostics.fail", {"message": message})
    wait_until(lambda: Task.objects.get(pk=task_id).status == Task.Status.FAILED, message="the task to fail")
    wait_until(lambda: f"task failed task_id={task_id}" in process.log(), message="the failure to be logged")
    log = process.log()
    assert "https://user:***@mirror.example/repo/" in log
    assert "s3cr3t-pw" not in log
