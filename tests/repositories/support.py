"""Helpers of the repositories tests (fixtures stay in conftest.py)."""

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helpers import ROOT


def exactly(message: str) -> str:
    """A `pytest.raises(match=...)` pattern for this whole message and nothing else."""
    return f"^{re.escape(message)}$"


def run_in_fresh_python(code: str, path: Path) -> dict[str, Any]:
    """Run `code` (with `path` defined) in a new Python process; report the error it raised and
    how much its peak memory grew while it ran, which the test process's own peak would hide."""
    body = "".join(f"    {line}\n" for line in code.splitlines())
    script = (
        "import json, resource, sys\n"
        "from pathlib import Path\n"
        "import repositories.yum\n"
        "path = Path(sys.argv[1])\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "error = None\n"
        f"try:\n{body}"
        "except Exception as exc:\n"
        "    error = f'{type(exc).__name__}: {exc}'\n"
        "grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
        "print(json.dumps({'error': error, 'grew_kib': grew}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
