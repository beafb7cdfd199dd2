"""The benchmark's quick mode runs end to end: every workload produces figures, every task
completes (the bench fails otherwise). No figure is asserted: speed is not this suite's business."""

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent.parent
WORKLOADS = {"enqueue", "drain", "latency", "scale", "ceiling"}


def server_url() -> str:
    """The test suite's server (DATABASE_URL's, or the embedded one this process keeps running).
    The bench only uses it to find the server: it works in a database of its own."""
    s = connection.settings_dict
    auth = quote(s["USER"], safe="") + (":" + quote(s["PASSWORD"], safe="") if s["PASSWORD"] else "")
    port = f":{s['PORT']}" if s["PORT"] else ""
    return f"postgres://{auth}@{quote(s['HOST'] or 'localhost', safe='')}{port}/{s['NAME']}"


def figures(tree):
    """Every {median, min, max} figure in the results, wherever it is nested."""
    if isinstance(tree, dict):
        if "median" in tree:
            yield tree
        else:
            for value in tree.values():
                yield from figures(value)


def test_quick_bench_runs_every_workload(tmp_path):
    output = tmp_path / "bench.json"
    env = {**os.environ, "DATABASE_URL": server_url()}
    env.pop("DJANGO_SETTINGS_MODULE", None)  # the bench picks its own settings
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--database", f"bench_smoke_{os.getpid()}", "--json", str(output)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert result.returncode == 0, result.stderr[-4000:]

    report = json.loads(output.read_text())
    assert set(report["results"]) == WORKLOADS
    ceiling = report["results"]["ceiling"]
    if "skipped" not in ceiling:  # pgbench may be missing on a developer's machine
        assert {"insert", "claim_finish", "claim_finish_2tx", "claim10_finish"} <= set(ceiling)
    assert set(report["results"]["drain"]) == {"1x8", "2x4"}
    assert set(report["results"]["scale"]["curve"]) >= {"1", "8"}
    numbers = list(figures(report["results"]))
    assert numbers and all(figure["median"] > 0 for figure in numbers), numbers
    assert "| ENQUEUE |" in result.stdout  # the table
