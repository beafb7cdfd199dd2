"""Peak memory of reading a large primary.xml with the yum layer's streaming parser.

Usage: .venv/bin/python bench/yum_parse_memory.py [--packages 60000]

Writes a repository of `--packages` packages with createrepo_c (tests/repositories/yum_builder)
in a temporary directory and decompresses its primary.xml, then reads it in a fresh Python
process for each way of reading, and prints how much that process's peak RSS (C allocations
included) grew while reading, over what it had once everything was imported:
- streamed: `iter_packages`, each package dropped once counted, as a batched database write
  would drop each batch;
- kept: the same records all kept in a list, what a parser that builds the whole list costs.
"""

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.repositories.yum_builder import Pkg, build_repository, record_path  # noqa: E402

# Linux only: VmHWM is the process's peak RSS, and writing 5 to clear_refs resets it to the
# current RSS. (getrusage's ru_maxrss would not do: it keeps the parent's peak across exec.)
READ = """
import json, sys, time
from pathlib import Path
from repositories.yum.packages import iter_packages

def peak_rss_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

path, keep = Path(sys.argv[1]), sys.argv[2] == "kept"
with open("/proc/self/clear_refs", "w") as clear_refs:
    clear_refs.write("5")
before = peak_rss_kib()
started = time.monotonic()
kept, count = [], 0
for package in iter_packages(path, shown_as="primary.xml"):
    count += 1
    if keep:
        kept.append(package)
seconds = time.monotonic() - started
after = peak_rss_kib()
print(json.dumps({"packages": count, "before_kib": before, "grew_kib": after - before, "seconds": seconds}))
"""


def packages(count: int) -> list[Pkg]:
    """Packages shaped like a distribution's: a summary, a handful of files, a changelog entry."""
    return [
        Pkg(
            name=f"package-{number:05d}",
            version=f"{number % 17}.{number % 5}.{number % 3}",
            release=f"{number % 9 + 1}.el9",
            epoch=number % 2,
            arch=("x86_64", "noarch", "i686")[number % 3],
            summary=f"Package number {number}, one of many in a large repository",
            files=tuple(f"/usr/share/package-{number:05d}/file-{file}" for file in range(5)),
            changelog=(("Builder <builder@example.com> - 1.0-1", 1700000000, "- Rebuilt"),),
        )
        for number in range(count)
    ]


def measure(primary: Path, way: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", READ, str(primary), way], cwd=ROOT, capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=60_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="yum-parse-memory-") as scratch:
        started = time.monotonic()
        root = build_repository(Path(scratch) / "repository", packages(args.packages))
        primary = Path(scratch) / "primary.xml"
        with gzip.open(record_path(root, "primary"), "rb") as compressed, primary.open("wb") as plain:
            shutil.copyfileobj(compressed, plain)
        print(
            f"repository: {args.packages:,} packages, primary.xml {primary.stat().st_size / 2**20:.1f} MiB "
            f"decompressed (written in {time.monotonic() - started:.1f} s)"
        )
        for way in ("streamed", "kept"):
            result = measure(primary, way)
            assert result["packages"] == args.packages, result
            print(
                f"{way:>8}: peak RSS +{result['grew_kib'] / 1024:.1f} MiB over {result['before_kib'] / 1024:.1f} MiB "
                f"after imports; read in {result['seconds']:.1f} s"
            )
    print(f"command: .venv/bin/python bench/yum_parse_memory.py --packages {args.packages}")


if __name__ == "__main__":
    main()
