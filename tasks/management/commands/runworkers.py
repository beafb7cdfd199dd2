"""Run the worker pool: workers, heartbeats, the dead-worker rescue, retries and the listener."""

import gc
import logging
import math
import os
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from prometheus_client import start_http_server

from tasks import registry
from tasks.checks import POOL_OVERHEAD_CONNECTIONS
from tasks.conf import MAX_DURATION, tasking
from tasks.exceptions import UnknownTaskType
from tasks.pool import WorkerPool

logger = logging.getLogger("tasks.runworkers")


class Command(BaseCommand):
    help = "Run task workers until SIGTERM or SIGINT."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--workers", type=int, help="worker threads (default: TASKING_WORKER_COUNT)")
        parser.add_argument(
            "--types", nargs="+", metavar="TYPE", help="serve only these task types (default: every registered type)"
        )
        parser.add_argument(
            "--grace",
            type=float,
            help="seconds the shutdown may take; handlers get all but the last half second "
            "(default: TASKING_SHUTDOWN_GRACE)",
        )
        parser.add_argument(
            "--health-file",
            type=Path,
            metavar="PATH",
            help="touch this file every second while every thread of the pool runs and its listener, "
            "if it has one (TASKING_WAKEUPS=listen), is connected (a container's health check looks at its age)",
        )
        parser.add_argument(
            "--metrics-port",
            type=int,
            metavar="PORT",
            help="serve Prometheus metrics at /metrics on this port, on every address of the host "
            "(0: a free port, logged at start)",
        )

    def handle(
        self,
        *args: Any,
        workers: int | None = None,
        types: list[str] | None = None,
        grace: float | None = None,
        health_file: Path | None = None,
        metrics_port: int | None = None,
        **options: Any,
    ) -> None:
        conf = tasking()
        workers = conf.worker_count if workers is None else workers
        grace = conf.shutdown_grace if grace is None else grace
        if not (math.isfinite(grace) and 0 < grace <= MAX_DURATION):
            raise CommandError(f"--grace must be a number of seconds above 0, at most a year: {grace}")
        if workers < 1:
            raise CommandError("--workers must be at least 1")
        if workers + POOL_OVERHEAD_CONNECTIONS > conf.pool_limit:
            raise CommandError(
                f"{workers} workers need {workers + POOL_OVERHEAD_CONNECTIONS} connections, "
                f"over TASKING_POOL_LIMIT={conf.pool_limit}"
            )
        if health_file is not None and not os.access(health_file.parent, os.W_OK):
            raise CommandError(f"--health-file: cannot write in the folder {health_file.parent}")
        if metrics_port is not None and not 0 <= metrics_port <= 65535:
            raise CommandError(f"--metrics-port must be a port number, 0 to 65535: {metrics_port}")
        types = types or registry.types()
        if not types:
            raise CommandError("no task types are registered")
        try:
            for type_ in types:
                registry.get(type_)  # an unknown type is an error, not a silent no-op
        except UnknownTaskType as exc:
            raise CommandError(f"{exc}; known types: {', '.join(registry.types())}") from None

        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            if stop.is_set():
                logger.warning("second signal, exiting at once signal=%s", signal.Signals(signum).name)
                os._exit(1)
            logger.info("stopping signal=%s grace=%.1fs", signal.Signals(signum).name, grace)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

        metrics = None
        if metrics_port is not None:
            try:
                metrics, metrics_thread = start_http_server(metrics_port)
            except OSError as exc:
                raise CommandError(f"--metrics-port: cannot serve on port {metrics_port}: {exc.strerror}") from None
            metrics_thread.name = "metrics"
        pool = WorkerPool(workers=workers, types=types, conf=conf)
        settings = connection.settings_dict
        logger.info(
            "pool started pid=%d workers=%d types=%s database=%s/%s heartbeat=%.1fs rescue_after=%.1fs wakeups=%s "
            "metrics_port=%s",
            os.getpid(),
            workers,
            ",".join(types),
            settings["HOST"] or "localhost",
            settings["NAME"],
            conf.heartbeat_interval,
            conf.heartbeat,
            conf.wakeups if conf.wakeups == "listen" else f"poll every {conf.poll_interval:g}s",
            "-" if metrics is None else metrics.server_port,
        )
        # What is loaded by now lives as long as the process: keep the collector off it, which
        # also spares the exit a collection of the whole heap (hundreds of ms, within the grace).
        gc.freeze()
        pool.start()
        while not stop.wait(1.0):
            if health_file is not None and pool.alive():
                health_file.touch()
        pool.stop(grace)
        if metrics is not None:
            metrics.shutdown()
            metrics.server_close()
        logger.info("pool stopped pid=%d", os.getpid())
