"""`TASKING_WAKEUPS=poll` behind a real PgBouncer in transaction mode: `runworkers` processes
drain a queue, stop a canceled run, and rescue the run of a SIGKILLed process.

PgBouncer (Debian's package, installed when missing) is started by the test on a free port,
in front of the test database, with fewer server connections than the pools open: each
transaction may run on another server session, so anything that a pool kept in a session
(a LISTEN, a prepared statement, a SET) would be lost or break. On PostgreSQL directly, what
PgBouncer would hide: poll mode prepares nothing, and a polling process has no session that
LISTENs.
"""

import os
import pwd
import re
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection

from tasks import client
from tasks.models import Task
from tests.helpers import APT_LOCK_WAIT, database_url, debian_command, wait_until
from tests.reliability import ledger
from tests.reliability.processes import manage

# Server connections PgBouncer opens to the test database: fewer than the clients below.
SERVER_CONNECTIONS = 4
POLL = {"TASKING_WAKEUPS": "poll", "TASKING_POLL_INTERVAL": "200ms"}
HEARTBEAT = 1.0  # the fleet's TASKING_HEARTBEAT

pytestmark = pytest.mark.timeout(2 * APT_LOCK_WAIT + 1200)  # installing PgBouncer may take minutes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def pgbouncer_command() -> str:
    return debian_command("pgbouncer", "pgbouncer")


def pgbouncer_version(command: str) -> tuple[int, ...]:
    """(1, 18) from `PgBouncer 1.18.0`, the first line of `pgbouncer --version`."""
    first = subprocess.run([command, "--version"], capture_output=True, text=True, timeout=30).stdout.split("\n")[0]
    return tuple(int(number) for number in re.findall(r"\d+", first)[:2])


@pytest.fixture
def pgbouncer(transactional_db, pgbouncer_command) -> Iterator[str]:
    """A PgBouncer in transaction mode in front of the test database; yields its DATABASE_URL."""
    settings = connection.settings_dict
    host, port = settings["HOST"] or "127.0.0.1", settings["PORT"] or "5432"
    with tempfile.TemporaryDirectory(prefix="pgbouncer-") as folder:
        os.chmod(folder, 0o755)  # read by the user PgBouncer becomes
        auth_file = Path(folder) / "users.txt"
        auth_file.write_text(f'"{settings["USER"]}" ""\n')
        listen_port = free_port()
        lines = [
            "[databases]",
            f"* = host={host} port={port}",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {listen_port}",
            "unix_socket_dir =",
            "auth_type = trust",
            f"auth_file = {auth_file}",
            "pool_mode = transaction",
            f"default_pool_size = {SERVER_CONNECTIONS}",
            "max_client_conn = 200",
        ]
        if pgbouncer_version(pgbouncer_command) >= (1, 21):
            # PgBouncer 1.21 learnt to carry prepared statements across server sessions, where
            # max_prepared_statements is on: that would hide a pool that prepares. Off, a
            # statement prepared on one session still fails on the next, as on older versions.
            lines.append("max_prepared_statements = 0")
        if os.geteuid() == 0:
            # PgBouncer will not run as root. It becomes the owner of a socket folder (an
            # embedded server's is its own), or nobody for a server on TCP.
            owner = os.stat(host).st_uid if host.startswith("/") else pwd.getpwnam("nobody").pw_uid
            lines.append(f"user = {pwd.getpwuid(owner).pw_name}")
        config = Path(folder) / "pgbouncer.ini"
        config.write_text("\n".join(lines) + "\n")
        log_path = Path(folder) / "pgbouncer.log"
        with log_path.open("w") as log:
            process = subprocess.Popen([pgbouncer_command, str(config)], stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(
                lambda: "process up" in log_path.read_text() or process.poll() is not None,
                timeout=30,
                message="pgbouncer to start",
            )
            assert process.poll() is None, log_path.read_text()
            yield f"postgres://{quote(settings['USER'], safe='')}@127.0.0.1:{listen_port}/{settings['NAME']}"
        finally:
            process.terminate()
            process.wait(timeout=30)


def problems(process) -> list[str]:
    """The log lines of a `runworkers` process above INFO (a database error, a lost run)."""
    return [line for line in process.log().splitlines() if " WARNING " in line or " ERROR " in line]


def test_poll_mode_drains_through_pgbouncer_with_no_session_state(fleet, pgbouncer, summary):
    pools = fleet("--workers", "4", url=pgbouncer, **POLL)
    processes = [pools.start(), pools.start()]
    started = time.monotonic()
    ids = client.enqueue_many("reliability.work", [{"seconds": 0}] * 400)
    wait_until(
        lambda: Task.objects.filter(pk__in=ids, status=Task.Status.COMPLETED).count() == len(ids),
        timeout=120,
        interval=0.1,
        message="the drain through pgbouncer",
    )
    took = time.monotonic() - started
    by_task = ledger.runs()
    summary("poll mode through pgbouncer", tasks=len(ids), processes=2, seconds=f"{took:.1f}")
    assert all(len(by_task[task_id]) == 1 for task_id in ids)
    assert {run.pid for runs in by_task.values() for run in runs} <= {p.pid for p in processes}
    # A task enqueued into idle pools starts within the poll interval (with room for a busy machine).
    enqueued = time.time()
    (late,) = client.enqueue_many("reliability.work", [{"seconds": 0}])
    wait_until(lambda: late in ledger.runs(), timeout=5, message="the late task to start")
    assert ledger.runs()[late][0].started - enqueued < 0.2 + 3.0
    assert [line for p in processes for line in problems(p)] == []


def test_poll_mode_through_pgbouncer_stops_a_canceled_run_at_its_heartbeat(fleet, pgbouncer):
    pools = fleet("--workers", "2", url=pgbouncer, **POLL)
    process = pools.start()
    (task_id,) = client.enqueue_many("reliability.work", [{"seconds": 600}])
    wait_until(lambda: task_id in ledger.runs(), timeout=10, message="the task to start")
    canceled = time.time()
    client.cancel(task_id)
    # No notification reaches the pool: its next heartbeat refresh (every third of the
    # heartbeat) finds the task canceled and stops the handler.
    (run,) = wait_until(lambda: [r for r in ledger.runs()[task_id] if r.ended], timeout=10, message="the stop")
    assert run.ended - canceled < HEARTBEAT / 3 + 3.0  # the room is for a loaded machine
    assert Task.objects.get(pk=task_id).status == Task.Status.CANCELED
    assert problems(process) == []


def test_poll_mode_through_pgbouncer_rescues_a_killed_process_run(fleet, pgbouncer, summary):
    pools = fleet("--workers", "2", url=pgbouncer, **POLL)
    victim = pools.start()
    (task_id,) = client.enqueue_many("reliability.work", [{"seconds": [600, 0.05]}])
    wait_until(lambda: task_id in ledger.runs(), timeout=10, message="the task to start")
    rescuer = pools.start()
    pools.kill(0)
    killed = time.time()
    wait_until(
        lambda: Task.objects.get(pk=task_id).status == Task.Status.COMPLETED,
        timeout=30,
        message="the rescue and the second run",
    )
    first, second = ledger.runs()[task_id]
    summary("poll mode rescue through pgbouncer", seconds=f"{second.started - killed:.1f}")
    assert (first.pid, first.ended) == (victim.pid, None)
    assert second.pid == rescuer.pid and second.started > killed
    assert second.started - killed < 10
    assert Task.objects.get(pk=task_id).retries == 1
    assert ledger.overlaps(ledger.runs(), pools.deaths) == []


def test_poll_mode_prepares_nothing(transactional_db):
    """On one session, the queue's statements run many times in poll mode and leave no
    prepared statement behind (the default mode prepares them)."""
    script = (
        "from django.db import connection\n"
        "from tasks import client, queue\n"
        "for _ in range(10):\n"
        "    client.enqueue_many('reliability.work', [{}])\n"
        "    queue.finish_and_claim([], ['reliability.work'], 1)\n"
        "with connection.cursor() as cursor:\n"
        "    cursor.execute('SELECT count(*) FROM pg_prepared_statements')\n"
        "    print('prepared', cursor.fetchone()[0])\n"
    )
    polling = manage(database_url(), "shell", "-c", script, **POLL)
    listening = manage(database_url(), "shell", "-c", script)
    assert "prepared 0" in polling.stdout, polling.stderr
    assert "prepared 0" not in listening.stdout, listening.stderr


def listening_sessions() -> int:
    """Sessions of the test database whose last statement was a LISTEN: a listener idles on its
    own (pg_stat_activity shows every session's, whichever process holds it)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %%'"
        )
        return int(cursor.fetchone()[0])


def test_a_polling_runworkers_listens_on_none_of_its_connections(fleet):
    polling = fleet("--workers", "2", **POLL)
    polling.start()
    ids = client.enqueue_many("reliability.work", [{"seconds": 0}] * 20)
    wait_until(
        lambda: Task.objects.filter(pk__in=ids, status=Task.Status.COMPLETED).count() == len(ids),
        timeout=30,
        message="the polling pool to run the tasks",
    )
    assert listening_sessions() == 0
    # The same check sees a listening pool's listener.
    fleet("--workers", "2").start()
    wait_until(lambda: listening_sessions() == 1, timeout=30, message="the listening pool's LISTEN")
