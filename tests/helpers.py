"""Helpers shared by the test modules (fixtures stay in conftest.py)."""

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01, message: str = "condition"):
    """Poll `predicate` until it returns a true value, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def database_url() -> str:
    """A DATABASE_URL for the test database, for subprocesses."""
    s = connection.settings_dict
    host = quote(s["HOST"] or "localhost", safe="")
    auth = quote(s["USER"], safe="") + (":" + quote(s["PASSWORD"], safe="") if s["PASSWORD"] else "")
    port = f":{s['PORT']}" if s["PORT"] else ""
    return f"postgres://{auth}@{host}{port}/{s['NAME']}"


# How long an install waits for another apt or dpkg that holds the lock.
APT_LOCK_WAIT = 300


def debian_command(command: str, package: str) -> str:
    """The path of `command`, installing Debian's `package` with apt-get when it is missing
    and this user may; else the test is skipped, saying why."""
    found = shutil.which(command)
    if found:
        return found
    if shutil.which("apt-get") is None:
        pytest.skip(f"{command} is not installed, and there is no apt-get to install it with")
    if os.geteuid() != 0:
        pytest.skip(f"{command} is not installed, and installing it (apt-get install -y {package}) needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = ["apt-get", "-o", f"DPkg::Lock::Timeout={APT_LOCK_WAIT}"]
    install = [*apt, "install", "-y", "--no-install-recommends", package]
    done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=APT_LOCK_WAIT + 600)
    if done.returncode != 0:  # the package lists may be missing or stale
        subprocess.run([*apt, "update"], env=env, capture_output=True, text=True, timeout=APT_LOCK_WAIT + 300)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=APT_LOCK_WAIT + 600)
    found = shutil.which(command)
    if done.returncode != 0 or found is None:
        why = (done.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"{command} is not installed, and apt-get install -y {package} failed: {why}")
    return found


def assert_one_line_command_error(args: list[bytes], message: str) -> None:
    """Run `manage.py` with raw byte arguments on the test database: it must fail with one
    `CommandError:` line on stderr containing `message`, no traceback and no output."""
    result = subprocess.run(
        [sys.executable.encode(), b"manage.py", *args],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url(), "SECRET_KEY": "test"},
        capture_output=True,
        timeout=60,
    )
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode != 0
    assert result.stdout == b""
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("CommandError: ") and message in stderr, stderr


def kill_left_running(processes: Iterable[subprocess.Popen[Any]]) -> None:
    """A fixture's teardown: SIGKILL what its test left running, and reap every process."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
