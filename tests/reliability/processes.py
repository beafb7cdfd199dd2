"""`manage.py` subprocesses of the suite, and a fleet of `runworkers` processes to torment.

Every subprocess runs with tests.settings, so that it registers the suite's task types, and
with a 1 s heartbeat, so that a dead run is rescued about a second after its death.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import ROOT, wait_until
from tests.reliability.ledger import Deaths


def manage_env(database_url: str, **env: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url,
        "SECRET_KEY": "reliability-tests-only",
        "TASKING_HEARTBEAT": "1s",
        "PYTHONUNBUFFERED": "1",
        **env,
    }


def manage(database_url: str, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """Run a management command to its end; its output is returned, not checked."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=manage_env(database_url, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Fleet:
    """`runworkers` processes in numbered slots on one database, started, killed and restarted
    by a test. Every death it sees is recorded in `deaths` (pid, time once the process is gone),
    for the ledger's overlap check. `close()` kills whatever is left."""

    def __init__(self, log_dir: Path, database_url: str, *args: str, **env: str):
        self._log_dir = log_dir
        self._args = args
        self._env = manage_env(database_url, **env)
        self.slots: dict[int, subprocess.Popen] = {}
        self.deaths = Deaths()
        self.kills = 0
        self.exits: list[int] = []  # return codes of processes that ended by themselves
        self._started = 0

    def start(self, slot: int | None = None, *args: str, wait: bool = True) -> subprocess.Popen:
        """Start a process in `slot` (a new one by default); with `wait`, until its pool runs.

        Waiting reads the log for the start line, which needs the INFO level (the default)."""
        slot = len(self.slots) if slot is None else slot
        log_path = self._log_dir / f"runworkers-{self._started}.log"
        self._started += 1
        with log_path.open("w") as log_file:
            process = subprocess.Popen(
                [sys.executable, "manage.py", "runworkers", *self._args, *args],
                cwd=ROOT,
                env=self._env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        process.log = log_path.read_text
        self.slots[slot] = process
        if wait:
            wait_until(
                lambda: "pool started" in process.log() or process.poll() is not None,
                timeout=60,
                interval=0.05,
                message="runworkers to start",
            )
            assert process.poll() is None, process.log()
        return process

    def kill(self, slot: int) -> None:
        """SIGKILL the process in `slot` and wait for it to be gone."""
        process = self.slots[slot]
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            self.kills += 1
        self._reap(process)

    def stop(self, slot: int, signum: int, timeout: float) -> int:
        """Send `signum` to the process in `slot` and wait for its exit; return its code."""
        process = self.slots[slot]
        process.send_signal(signum)
        process.wait(timeout=timeout)
        self._reap(process)
        return process.returncode

    def revive(self) -> None:
        """Restart, without waiting, every process that ended by itself: a supervisor's job."""
        for slot, process in list(self.slots.items()):
            if not getattr(process, "reaped", False) and process.poll() is not None:
                self._reap(process)
                self.exits.append(process.returncode)
                self.start(slot, wait=False)

    def until(self, predicate, timeout: float, message: str):
        """Wait for `predicate`, reviving the processes that end meanwhile."""

        def check():
            self.revive()
            return predicate()

        return wait_until(check, timeout=timeout, interval=0.05, message=message)

    def close(self) -> None:
        for slot in list(self.slots):
            self.kill(slot)

    def _reap(self, process: subprocess.Popen) -> None:
        if getattr(process, "reaped", False):
            return
        process.wait(timeout=30)
        process.reaped = True
        self.deaths.add(process.pid, time.time())
