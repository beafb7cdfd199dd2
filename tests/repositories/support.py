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
    # Linux: VmHWM is the peak RSS, reset to the current one by writing 5 to clear_refs.
    # (getrusage's ru_maxrss keeps the forking parent's peak across exec.)
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "import repositories.yum\n"
        "def peak_rss_kib():\n"
        "    with open('/proc/self/status') as status:\n"
        "        return next(int(line.split()[1]) for line in status if line.startswith('VmHWM:'))\n"
        "path = Path(sys.argv[1])\n"
        "with open('/proc/self/clear_refs', 'w') as clear_refs:\n"
        "    clear_refs.write('5')\n"
        "before = peak_rss_kib()\n"
        "error = None\n"
        f"try:\n{body}"
        "except Exception as exc:\n"
        "    error = f'{type(exc).__name__}: {exc}'\n"
        "print(json.dumps({'error': error, 'grew_kib': peak_rss_kib() - before}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
