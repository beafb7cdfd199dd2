"""Django's PostgreSQL backend for the embedded server: the server is started (or joined) at
the first connection, or the first `dbshell`, and its socket written into the settings."""

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.db.backends.postgresql import base, client

from contentsources.embedded_db import database_settings


class DatabaseClient(client.DatabaseClient):
    connection: "DatabaseWrapper"

    def runshell(self, parameters: Iterable[str]) -> None:
        self.connection.start_server()
        super().runshell(parameters)


class DatabaseWrapper(base.DatabaseWrapper):
    client_class = DatabaseClient

    def start_server(self) -> None:
        if not self.settings_dict["HOST"]:
            server = database_settings(Path(self.settings_dict["DATA_DIR"]))
            self.settings_dict.update(HOST=server["HOST"], PORT=server["PORT"])

    def get_connection_params(self) -> dict[str, Any]:
        self.start_server()
        return super().get_connection_params()
