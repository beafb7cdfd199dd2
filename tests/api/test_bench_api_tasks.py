"""bench/api_tasks.py runs end to end, small: it reports every scenario and explains the
queries. No figure is asserted: speed is not this suite's business."""

import json
import os
import subprocess
import sys

from tests.bench.test_bench_smoke import ROOT, server_url


def test_the_api_bench_runs(tmp_path):
    output = tmp_path / "bench.json"
    env = {**os.environ, "DATABASE_URL": server_url()}
    env.pop("DJANGO_SETTINGS_MODULE", None)  # the bench picks its own settings

    result = subprocess.run(
        [
            sys.executable, "bench/api_tasks.py", "--tasks", "3000", "--requests", "5", "--explain",
            "--database", f"bench_api_smoke_{os.getpid()}", "--json", str(output),
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(output.read_text())["results"]
    assert set(report) == {"baseline", "visible", "sparse"}
    assert report["visible"]["queries"] == 2 and report["visible"]["visible"] == 3000
    assert "Index Only Scan using" in result.stdout and "-- GET tasks/?offset=" in result.stdout
