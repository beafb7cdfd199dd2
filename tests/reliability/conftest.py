"""Fixtures of the fault-injection suite, its --long mode, and its summary lines."""

import tempfile
from pathlib import Path

import pytest

from tests.helpers import database_url
from tests.reliability.options import long_minutes
from tests.reliability.processes import Fleet
from tests.reliability.throwaway_postgres import ThrowawayPostgres

SUMMARY = pytest.StashKey[list[str]]()


def pytest_addoption(parser):
    group = parser.getgroup("reliability", "fault-injection suite (tests/reliability)")
    group.addoption("--long", action="store_true", help="storm for minutes instead of seconds, before a release")
    group.addoption("--long-minutes", type=float, default=10.0, help="how long --long storms (default: 10)")


def pytest_collection_modifyitems(config, items):
    minutes = long_minutes(config)
    if minutes is None:
        return
    for item in items:
        if item.get_closest_marker("storm"):
            item.add_marker(pytest.mark.timeout(minutes * 60 + 600), append=False)  # before its own


def pytest_terminal_summary(terminalreporter, config):
    lines = config.stash.get(SUMMARY, [])
    if lines:
        terminalreporter.section("reliability summary")
        for line in lines:
            terminalreporter.line(line)


@pytest.fixture
def summary(request):
    """Print a scenario's one summary line; all of them are repeated at the end of the run."""

    def report(scenario: str, **fields) -> str:
        line = f"{scenario}: " + " ".join(f"{key}={value}" for key, value in fields.items())
        request.config.stash.setdefault(SUMMARY, []).append(line)
        print(line)
        return line

    return report


@pytest.fixture
def fleet(transactional_db, tmp_path):
    """Make a Fleet of runworkers processes on the test database (or on `url`); every process
    is killed at the end of the test."""
    fleets = []

    def make(*args: str, url: str | None = None, **env: str) -> Fleet:
        made = Fleet(tmp_path, url or database_url(), *args, **env)
        fleets.append(made)
        return made

    yield make
    for made in fleets:
        made.close()


@pytest.fixture
def throwaway_postgres():
    """A PostgreSQL server of this test's own, started as the project starts its embedded one.
    Its folder is not under pytest's temporary root: as root, the server runs as a user of its
    own, and every pytest session that starts resets that root to be root's alone."""
    with tempfile.TemporaryDirectory(prefix="throwaway-postgres-") as folder:
        server = ThrowawayPostgres(Path(folder) / "pg")
        yield server
        server.close()
