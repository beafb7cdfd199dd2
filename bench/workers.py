"""`manage.py runworkers` processes started by the bench: watched, measured, and always stopped.

Each process writes its log to a file of the run's log folder (as a deployment writes to its
log), so that logging costs what it costs in production without filling the terminal.
"""

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

RSS_SAMPLE_INTERVAL = 0.1
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
KILL_TIMEOUT = 5.0


class WorkerProcesses:
    """`processes` × `runworkers --workers N`, as a context manager that stops them on exit.

    While they run, a thread samples each process's resident set size every 100 ms and
    keeps each one's peak.
    """

    program = "runworkers"  # what the processes are, for error messages

    def __init__(
        self,
        *,
        root: Path,
        env: dict[str, str],
        log_dir: Path,
        processes: int,
        workers: int,
        types: list[str],
        grace: float = 1.0,
        name: str = "runworkers",
    ):
        self.root = root
        self.env = env
        self.log_dir = log_dir
        self.count = processes
        self.workers = workers
        self.types = types
        self.grace = grace
        self.name = name
        self.processes: list[subprocess.Popen] = []
        self.log_paths: list[Path] = []
        self.spawned_at: float | None = None  # time.time() just before the first process starts
        self.peak_rss: dict[int, int] = {}
        self._sampling = threading.Event()
        self._sampler = threading.Thread(target=self._sample_rss, name="rss-sampler", daemon=True)

    # --- lifetime -------------------------------------------------------------------------

    def __enter__(self) -> "WorkerProcesses":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def command(self) -> list[str]:
        return [
            sys.executable,
            "manage.py",
            "runworkers",
            "--workers",
            str(self.workers),
            "--types",
            *self.types,
            "--grace",
            str(self.grace),
        ]

    def layout(self) -> str:
        """How the log files name the processes' layout."""
        return f"{self.count}x{self.workers}"

    def start(self) -> None:
        self.spawned_at = time.time()
        for n in range(self.count):
            log_path = self.log_dir / f"{self.name}-{self.layout()}-{int(self.spawned_at * 1000)}-{n}.log"
            with log_path.open("w") as log:
                process = subprocess.Popen(
                    self.command(), cwd=self.root, env=self.env, stdout=log, stderr=subprocess.STDOUT
                )
            self.processes.append(process)
            self.log_paths.append(log_path)
        self._sampler.start()

    def stop(self) -> None:
        """SIGTERM (the pool's own shutdown), then SIGKILL what outlives STOP_TIMEOUT."""
        self._sampling.set()
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in self.processes:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=KILL_TIMEOUT)
        if self._sampler.is_alive():
            self._sampler.join(timeout=5.0)

    # --- watching -------------------------------------------------------------------------

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def check_alive(self) -> None:
        """Raise, with the end of its log, if a process has exited."""
        for process, log_path in zip(self.processes, self.log_paths, strict=True):
            if process.poll() is not None:
                raise RuntimeError(f"{self.program} exited with {process.returncode}:\n{tail(log_path)}")

    def wait_started(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until every process has logged that its pool started."""
        deadline = time.monotonic() + timeout
        while not all("pool started" in path.read_text(errors="replace") for path in self.log_paths):
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"runworkers did not start within {timeout}s:\n{tail(self.log_paths[0])}")
            time.sleep(0.05)

    def cpu_seconds(self) -> float:
        """User + system CPU time the processes have used so far."""
        total = 0.0
        for pid in self.pids:
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total

    def _sample_rss(self) -> None:
        while not self._sampling.is_set():
            for pid in self.pids:
                try:
                    rss = psutil.Process(pid).memory_info().rss
                except psutil.Error:
                    continue
                self.peak_rss[pid] = max(self.peak_rss.get(pid, 0), rss)
            self._sampling.wait(RSS_SAMPLE_INTERVAL)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})"
