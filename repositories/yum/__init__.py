"""The yum layer: fetch and parse the metadata of real yum repositories, safely.

`YumRepository` is the entry point; the modules below it each hold one concept: `fetch`
(HTTP from public addresses, within limits), `repomd` (the index), `checksum`,
`compression`, `packages` (streaming primary.xml), `content` (counts for a snapshot), and
`parsing` (createrepo_c's errors). Every failure is a `repositories.exceptions.RepositoryError`.
"""

import os
from pathlib import Path

# createrepo_c's librpm reads its configuration when it is imported, and on a host without
# rpm (Debian's default) writes "error: Unable to open /usr/lib/rpm/rpmrc" to stderr: a line
# before every command's own output. The yum layer reads metadata, never a package's header,
# and needs nothing of that configuration: librpm is pointed at an empty one when the host has
# none. Before the imports below, which load createrepo_c.
if "RPM_CONFIGDIR" not in os.environ and not Path("/usr/lib/rpm/rpmrc").exists():
    os.environ["RPM_CONFIGDIR"] = str(Path(__file__).resolve().parent / "rpm")

from repositories.yum.content import ContentCounts
from repositories.yum.fetch import download
from repositories.yum.packages import Package, iter_packages
from repositories.yum.repomd import MetadataFile, Repomd, parse_repomd
from repositories.yum.repository import YumRepository
from repositories.yum.stopping import StopCheck

__all__ = [
    "ContentCounts",
    "MetadataFile",
    "Package",
    "Repomd",
    "StopCheck",
    "YumRepository",
    "download",
    "iter_packages",
    "parse_repomd",
]
