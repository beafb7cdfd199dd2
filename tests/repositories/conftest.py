import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from tests.repositories.yum_builder import Advisory, Environment, Group, ModuleStream, Pkg, build_repository
from tests.repositories.yum_server import YumServer

BASH = Pkg("bash", "5.2.26", "3.el9", summary="The GNU Bourne Again shell", files=("/usr/bin/bash",))
ZSH = Pkg("zsh", "5.9", "4.el9", epoch=1, summary="Powerful interactive shell", files=("/usr/bin/zsh",))
TMUX = Pkg(
    "tmux",
    "3.3a",
    "7.el9",
    arch="aarch64",
    summary="A terminal multiplexer",
    changelog=(("Jane Doe <jane@example.com> - 3.3a-7", 1700000000, "- Rebuilt"),),
)
PACKAGES = (BASH, ZSH, TMUX)


@pytest.fixture
def repo_root(tmp_path) -> Path:
    """A directory for a repository's files, served by `yum_server`."""
    root = tmp_path / "served"
    root.mkdir()
    return root


@pytest.fixture
def work_dir(tmp_path) -> Path:
    """A working directory for the yum layer's downloads."""
    directory = tmp_path / "work"
    directory.mkdir()
    return directory


@pytest.fixture
def repository(repo_root) -> Path:
    """A small real repository: three packages, an advisory, comps and a module stream."""
    return build_repository(
        repo_root,
        PACKAGES,
        advisories=[Advisory("RHSA-2024:0001", packages=(BASH,)), Advisory("RHBA-2024:0002", type="bugfix")],
        groups=[Group("core", packages=("bash",)), Group("shells", packages=("bash", "zsh"))],
        environments=[Environment("minimal", groups=("core",))],
        modules=[ModuleStream("tmux", "3", packages=(TMUX,))],
    )


@pytest.fixture
def allow_private_urls(settings):
    """The test servers listen on 127.0.0.1, which only REPOSITORIES_ALLOW_PRIVATE_URLS allows."""
    settings.REPOSITORIES = {**settings.REPOSITORIES, "ALLOW_PRIVATE_URLS": True}
    return settings


@pytest.fixture
def yum_server(repo_root, allow_private_urls):
    """Start HTTP servers on 127.0.0.1 (the first on `repo_root`); all stop with the test."""
    servers: list[YumServer] = []

    def start(root: Path = repo_root, tls: ssl.SSLContext | None = None) -> YumServer:
        server = YumServer(root, tls=tls).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def localhost_certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for the name `localhost` only (no IP address), and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    directory = tmp_path_factory.mktemp("tls")
    certificate, key = directory / "localhost.pem", directory / "localhost-key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(certificate), "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return certificate, key


# The fixtures of the domain's tests (services, handlers, pools), kept in their own module.
from tests.repositories.domain import pool, snapshot_storage, upstream  # noqa: E402, F401
