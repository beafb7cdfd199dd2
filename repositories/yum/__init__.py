"""The yum layer: fetch and parse the metadata of real yum repositories, safely.

`YumRepository` is the entry point; the modules below it each hold one concept: `fetch`
(HTTP from public addresses, within limits), `repomd` (the index), `checksum`,
`compression`, `packages` (streaming primary.xml), `content` (counts for a snapshot), and
`parsing` (createrepo_c's errors). Every failure is a `repositories.exceptions.RepositoryError`.
"""

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
