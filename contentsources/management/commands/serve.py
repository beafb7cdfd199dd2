"""`manage.py serve`: the whole product in one command, as `make run` starts it: the API and
the admin under gunicorn (a real WSGI server) and the worker pool (`manage.py runworkers`),
stopped together on Ctrl-C or SIGTERM.

The two run as child processes in sessions of their own, so that a terminal's Ctrl-C reaches
this command only, which asks each child to stop once (SIGTERM: gunicorn finishes its
requests, the pool gives its tasks their grace) and waits for both; SIGHUP (the terminal
closed) does the same. If one child dies, the other is stopped and the command fails.

The children do not outlive this command, even when it is killed with SIGKILL and has no
chance to stop them: each asks the kernel, before it runs, for a SIGTERM when its parent dies
(Linux's PR_SET_PDEATHSIG), and so stops as it would at Ctrl-C. The kernel sends it at once,
with no code in the children and no polling; the check of the parent pid that follows covers
a parent that died before the request was made. (The signal follows the thread that started
the child: the main thread here, which lives as long as the command.)

A port already in use is refused before anything starts. In the embedded demo, an `admin`
user (staff, superuser) gets a new random password, printed once.
"""

import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tasks.conf import tasking

# How often the children are looked at; how long gunicorn may take beyond the pool's grace.
WATCH = 0.5
EXTRA_STOP_TIME = 5.0
# prctl(2)'s option that asks for a signal when the parent dies.
PR_SET_PDEATHSIG = 1


class Command(BaseCommand):
    help = "Serve the API and the admin (gunicorn) and run the worker pool, until Ctrl-C."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default="127.0.0.1:8000", help="address of the web server (default: %(default)s)")
        parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes (default: 2)")

    def handle(self, *args: Any, bind: str, web_workers: int, **options: Any) -> None:
        if web_workers < 1:
            raise CommandError(f"--web-workers must be at least 1: {web_workers}")
        host, _, port = bind.rpartition(":")
        if not host or not port.isdigit():
            raise CommandError(f"--bind must be HOST:PORT, not {bind!r}")
        _check_free(bind, host.strip("[]"), int(port))
        if settings.EMBEDDED_DATABASE:
            self._demo_admin()
        manage = [sys.executable, os.path.abspath(sys.argv[0])]
        gunicorn = [
            sys.executable, "-m", "gunicorn", "contentsources.wsgi:application",
            "--config", "python:contentsources.gunicorn_conf", "--bind", bind, "--workers", str(web_workers),
            "--graceful-timeout", str(int(tasking().shutdown_grace)),
        ]  # fmt: skip
        stop_with_me = _stop_with(os.getpid())
        children = {
            "web": subprocess.Popen(gunicorn, start_new_session=True, preexec_fn=stop_with_me),
            "workers": subprocess.Popen([*manage, "runworkers"], start_new_session=True, preexec_fn=stop_with_me),
        }
        base = f"http://{bind}"
        self.stdout.write(
            f"serving on {base}/\n"
            f"  API:     {base}/api/content-sources/v1/ (openapi.json for its schema)\n"
            f"  admin:   {base}/admin/\n"
            f"  content: {base}/{settings.CONTENT_URL_PREFIX}\n"
            "Ctrl-C stops the web server and the worker pool."
        )
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGHUP, on_signal)
        failed = None
        while not stop.wait(WATCH):
            failed = next((name for name, child in children.items() if child.poll() is not None), None)
            if failed is not None:
                break
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + tasking().shutdown_grace + EXTRA_STOP_TIME
        for name, child in children.items():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"the {name} process did not stop in time; killing it")
                child.kill()
                child.wait()
        if failed is not None:
            raise CommandError(f"the {failed} process exited with status {children[failed].returncode}; stopped")
        self.stdout.write("stopped")

    def _demo_admin(self) -> None:
        """An admin user for the local demo, with a new random password at each start."""
        password = secrets.token_urlsafe(12)
        user, _ = get_user_model().objects.get_or_create(username="admin")
        user.is_active = user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        self.stdout.write(f"admin user: admin, password: {password} (new at each start of the demo)")


def _check_free(bind: str, host: str, port: int) -> None:
    """Refuse an address that gunicorn could not listen on, before anything starts."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
            probe.bind(address)
    except OSError as exc:
        raise CommandError(f"--bind {bind}: cannot listen there: {exc.strerror or exc}") from None


def _stop_with(parent: int) -> Callable[[], None]:
    """What a child runs before its program: a SIGTERM to it when `parent` dies."""
    libc = ctypes.CDLL(None)

    def preexec() -> None:
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0 or os.getppid() != parent:
            os._exit(1)  # cannot be tied to its parent, or the parent is already gone

    return preexec
