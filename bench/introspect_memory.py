"""Peak memory and wall time of the introspect handler on a large repository.

Usage: [DATABASE_URL=postgres://user@host:5432/] .venv/bin/python bench/introspect_memory.py [--packages 60000]

Writes a repository of `--packages` packages with createrepo_c (tests/repositories/yum_builder,
packages shaped as bench/yum_parse_memory.py makes them), serves it over HTTP on 127.0.0.1
(tests/repositories/yum_server), and in a fresh Python process on a database of its own
(bench/database.py: `bench_introspect_memory` on DATABASE_URL's server, or the embedded one;
created, migrated and dropped) adds a configuration for it, claims the introspect task its
creation queued and runs the real handler on it, twice: the first introspection (every
package new), then a forced one (every package known). For each it prints how much the
process's peak RSS (`VmHWM`, reset just before the handler: Linux only) grew over the RSS it had
then, and the handler's wall time.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.database import BenchDatabase, Server  # noqa: E402
from bench.yum_parse_memory import packages  # noqa: E402
from tests.repositories.yum_builder import build_repository, record_path  # noqa: E402
from tests.repositories.yum_server import YumServer  # noqa: E402

DATABASE = "bench_introspect_memory"
RUN_TIMEOUT = 1800.0

# Runs in the fresh process. VmHWM is the peak RSS; writing 5 to clear_refs resets it to the
# current RSS (getrusage's ru_maxrss would keep the forking parent's peak across exec).
INTROSPECT = """
import json, sys, time
import django

django.setup()
from repositories import services
from repositories.handlers.introspect import introspect
from repositories.models import Repository
from tasks import queue
from tasks.context import TaskContext

def status_kib(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))

def run_introspect():
    [run] = queue.claim([services.INTROSPECT], 1)
    context = TaskContext(run)
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    before = status_kib("VmHWM")
    started = time.monotonic()
    introspect(context)
    seconds = time.monotonic() - started
    grew = status_kib("VmHWM") - before
    assert queue.complete(run)
    return {"before_kib": before, "grew_kib": grew, "seconds": seconds}

configuration = services.repository_configuration_create(org_id="bench", name="large", url=sys.argv[1])
first = run_introspect()
services.repository_introspect(configuration=configuration, force=True)
again = run_introspect()
count = Repository.objects.get(uuid=configuration.repository_id).package_count
print(json.dumps({"packages": count, "first": first, "again": again}))
"""


def introspect_in_fresh_process(url: str, database_url: str) -> dict[str, object]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "contentsources.settings",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-not-secret"),
        "REPOSITORIES_ALLOW_PRIVATE_URLS": "true",  # the repository is served on 127.0.0.1
        "LOG_LEVEL": "WARNING",
    }
    done = subprocess.run(
        [sys.executable, "-c", INTROSPECT, url], cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    if done.returncode != 0:
        raise RuntimeError(f"the introspection failed:\n{done.stdout}\n{done.stderr}")
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=60_000)
    args = parser.parse_args()

    server = Server.from_environment(ROOT)
    database = BenchDatabase(server, DATABASE)
    database.create()
    try:
        env = {**os.environ, "DATABASE_URL": database.url, "SECRET_KEY": "bench-only-not-secret"}
        database.migrate(ROOT, {**env, "DJANGO_SETTINGS_MODULE": "contentsources.settings"})
        with tempfile.TemporaryDirectory(prefix="introspect-memory-") as scratch:
            started = time.monotonic()
            root = build_repository(Path(scratch) / "repository", packages(args.packages))
            primary = record_path(root, "primary")
            print(
                f"repository: {args.packages:,} packages, primary.xml.gz {primary.stat().st_size / 2**20:.1f} MiB "
                f"(written in {time.monotonic() - started:.1f} s), served on 127.0.0.1"
            )
            served = YumServer(root).start()
            try:
                result = introspect_in_fresh_process(served.url(), database.url)
            finally:
                served.stop()
    finally:
        database.drop()
    assert result["packages"] == args.packages, result
    for name, label in (("first", "first introspection"), ("again", "forced again")):
        run = result[name]
        assert isinstance(run, dict)
        print(
            f"{label:>19}: peak RSS +{run['grew_kib'] / 1024:.1f} MiB over {run['before_kib'] / 1024:.1f} MiB "
            f"before the handler; {run['seconds']:.1f} s"
        )
    print(f"command: .venv/bin/python bench/introspect_memory.py --packages {args.packages}")


if __name__ == "__main__":
    main()
