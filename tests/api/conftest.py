import logging

import pytest
from django.test.testcases import LiveServerThread, _StaticFilesHandler
from rest_framework.test import APIClient

import tests.api.handlers  # noqa: F401  (registers the API tests' task types)
from contentsources.api.identity import encode_identity
from tests.api.factories import ORG_A, ORG_B

# The yum layer's fixtures, for the tests that introspect and snapshot a real repository.
from tests.repositories.conftest import allow_private_urls, repo_root, repository, yum_server  # noqa: F401

API = "/api/content-sources/v1/"


def client_of(org_id: str, *, user: str = "alice", account: str = "acct-1") -> APIClient:
    """A DRF test client calling as a user of this organisation."""
    client = APIClient()
    client.credentials(HTTP_X_RH_IDENTITY=encode_identity(org_id=org_id, account_number=account, user=user))
    return client


@pytest.fixture
def api(db) -> APIClient:
    """Organisation A's client."""
    return client_of(ORG_A)


@pytest.fixture
def other(db) -> APIClient:
    """Organisation B's client."""
    return client_of(ORG_B, user="bob", account="acct-2")


@pytest.fixture
def snapshot_storage(settings, tmp_path):
    """Snapshot files in a folder of the test (for the app here and a runworkers it starts)."""
    location = tmp_path / "snapshots"
    location.mkdir()
    settings.STORAGES = {
        **settings.STORAGES,
        "snapshots": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(location)}},
    }
    return location


@pytest.fixture
def app_server(transactional_db):
    """The project's WSGI app served over real HTTP on 127.0.0.1 (a port of its own), in a
    thread of this process, on the test database; stopped at the end of the test. Its base
    URL, e.g. http://127.0.0.1:40123."""
    thread = LiveServerThread("127.0.0.1", _StaticFilesHandler, port=0)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait(timeout=10)
    if thread.error:
        raise thread.error
    yield f"http://127.0.0.1:{thread.port}"
    thread.terminate()


@pytest.fixture
def log_lines():
    """Every line logged while the test runs, formatted by the project's own formatter (the
    one that adds the current request id to a line that has none)."""
    from tasks.log import RedactingFormatter

    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect(level=logging.INFO)
    handler.setFormatter(RedactingFormatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    yield lines
    root.removeHandler(handler)
