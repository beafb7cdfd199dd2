"""The benchmark's own database: created fresh on the chosen server, migrated, dropped at the end.

The server is the one of DATABASE_URL, or the project's embedded one. The database named in
DATABASE_URL only locates the server: the bench never connects to it, and works in a database
of its own whose name must start with "bench", so that no run can drop one holding real data.
"""

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

NAME_PREFIX = "bench"
MIGRATE_TIMEOUT = 300.0


@dataclass(frozen=True)
class Server:
    """Where PostgreSQL listens, and as whom the bench connects."""

    host: str  # a host name, or a Unix-socket directory
    port: str
    user: str
    password: str
    embedded: bool

    @classmethod
    def from_environment(cls, root: Path) -> "Server":
        """DATABASE_URL's server, or the embedded one, which this process then keeps running
        until it exits (the embedded server stops when its last registered process exits)."""
        url = os.environ.get("DATABASE_URL", "")
        if url:
            params = conninfo_to_dict(url)
            return cls(
                host=params.get("host") or "localhost",
                port=str(params.get("port") or 5432),
                user=params.get("user") or "postgres",
                password=params.get("password") or "",
                embedded=False,
            )
        sys.path.insert(0, str(root))
        from contentsources.embedded_db import database_settings

        settings = database_settings(root / ".pgdata")
        return cls(settings["HOST"], settings["PORT"], settings["USER"], settings["PASSWORD"], embedded=True)

    def conninfo(self, dbname: str) -> str:
        return make_conninfo(
            host=self.host, port=self.port, user=self.user, password=self.password or None, dbname=dbname
        )

    def url(self, dbname: str) -> str:
        """A DATABASE_URL for Django processes (a socket directory goes percent-encoded)."""
        auth = quote(self.user, safe="") + (":" + quote(self.password, safe="") if self.password else "")
        return f"postgres://{auth}@{quote(self.host, safe='')}:{self.port}/{dbname}"

    def libpq_env(self, dbname: str) -> dict[str, str]:
        """The environment that points libpq clients such as pgbench at this server."""
        env = {"PGHOST": self.host, "PGPORT": self.port, "PGUSER": self.user, "PGDATABASE": dbname}
        if self.password:
            env["PGPASSWORD"] = self.password
        return env

    def admin(self) -> psycopg.Connection:
        """An autocommit connection to a maintenance database, for CREATE and DROP DATABASE."""
        last_error = None
        for dbname in ("postgres", "template1"):
            try:
                return psycopg.connect(self.conninfo(dbname), autocommit=True, connect_timeout=10)
            except psycopg.OperationalError as exc:
                last_error = exc
        raise last_error


class BenchDatabase:
    """A database that exists for one run of the bench."""

    def __init__(self, server: Server, name: str):
        if not name.startswith(NAME_PREFIX) or not name.replace("_", "").isalnum():
            raise ValueError(
                f"the bench database name must start with {NAME_PREFIX!r} and be a plain identifier: {name!r}"
            )
        self.server = server
        self.name = name

    @property
    def url(self) -> str:
        return self.server.url(self.name)

    def create(self) -> None:
        """Drop any leftover of an earlier run (killing its sessions) and create it empty."""
        with self.server.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        with self.server.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def migrate(self, root: Path, env: dict[str, str]) -> None:
        """Create the project's tables and the bench app's, as a deployment would."""
        result = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--no-input"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=MIGRATE_TIMEOUT,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py migrate failed:\n{result.stdout}\n{result.stderr}")
