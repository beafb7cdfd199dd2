"""Django's PostgreSQL backend for the embedded server: the server is started (or joined), and
its socket written into the settings, at a process's first connection or `dbshell`, not when
the settings load (Django makes this wrapper as soon as a model class is defined)."""

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.db.backends.postgresql import base, client

from contentsources.embedded_db import database_settings

# One start at a time: a pool's threads make their first connections together.
_starting = threading.Lock()


class DatabaseClient(client.DatabaseClient):
    connection: "DatabaseWrapper"

    def runshell(self, parameters: Iterable[str]) -> None:
        self.connection.start_server()
        super().runshell(parameters)


class DatabaseWrapper(base.DatabaseWrapper):
    client_class = DatabaseClient

    def start_server(self) -> None:
        with _starting:
            data_dir = self.settings_dict.pop("DATA_DIR", None)
            if data_dir is not None:
                server = database_settings(Path(data_dir))
                self.settings_dict.update(HOST=server["HOST"], PORT=server["PORT"])

    def get_connection_params(self) -> dict[str, Any]:
        self.start_server()
        return super().get_connection_params()
