"""Serve a small yum repository on 127.0.0.1, for trying the product without the internet.

Usage: .venv/bin/python scripts/demo_repository.py [--port 8080]

Its metadata is real (written by createrepo_c, as the test suite writes it: five packages, an
advisory, package groups); it holds no RPM files, which snapshots never copy anyway. The
embedded demo allows private addresses (REPOSITORIES_ALLOW_PRIVATE_URLS), so `make run` can
introspect and snapshot it. Ctrl-C stops it.
"""

import argparse
import functools
import sys
import tempfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Imported once the checkout is on sys.path: the script runs from anywhere (E402).
from tests.repositories.yum_builder import Advisory, Group, Pkg, build_repository  # noqa: E402

PACKAGES = (
    Pkg("bash", "5.2.26", "3.el9", summary="The GNU Bourne Again shell"),
    Pkg("coreutils", "8.32", "35.el9", summary="A set of basic GNU tools"),
    Pkg("curl", "7.76.1", "29.el9", summary="A utility for getting files from remote servers"),
    Pkg("tmux", "3.3a", "7.el9", summary="A terminal multiplexer"),
    Pkg("zsh", "5.9", "4.el9", epoch=1, summary="Powerful interactive shell"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    port = parser.parse_args().port
    with tempfile.TemporaryDirectory(prefix="demo-repository-") as root:
        build_repository(
            Path(root),
            PACKAGES,
            advisories=[Advisory("DEMO-2026:0001", packages=(PACKAGES[2],))],
            groups=[Group("shells", packages=("bash", "zsh"))],
        )
        handler = functools.partial(SimpleHTTPRequestHandler, directory=root)
        with ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
            print(f"serving a yum repository of {len(PACKAGES)} packages at http://127.0.0.1:{port}/", flush=True)
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                pass


if __name__ == "__main__":
    main()
