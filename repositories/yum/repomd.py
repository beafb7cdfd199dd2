"""repomd.xml, the index of a yum repository: its revision and the metadata files it lists."""

from dataclasses import dataclass
from pathlib import Path

import createrepo_c as cr

from repositories.exceptions import NotAYumRepository
from repositories.yum.checksum import file_checksum
from repositories.yum.parsing import createrepo_errors

REPOMD_PATH = "repodata/repomd.xml"
# The detached OpenPGP signature of repomd.xml, which signed repositories serve beside it.
REPOMD_SIGNATURE_PATH = "repodata/repomd.xml.asc"
# A yum repository lists its packages in this file; a repomd.xml without it indexes nothing.
PRIMARY = "primary"
_HEAD_SIZE = 512


@dataclass(frozen=True)
class MetadataFile:
    """One `<data>` record of repomd.xml: a metadata file of the repository and what it should be."""

    type: str  # primary, filelists, other, updateinfo, group, group_gz, modules, ...
    location_href: str  # relative to the repository's URL
    checksum_type: str | None
    checksum: str | None
    open_checksum_type: str | None  # of the decompressed content
    open_checksum: str | None
    size: int | None
    open_size: int | None
    timestamp: int | None


@dataclass(frozen=True)
class Repomd:
    """A parsed repomd.xml."""

    revision: str | None
    # SHA-256 of repomd.xml as served: unchanged, so is every file it lists.
    checksum: str
    files: tuple[MetadataFile, ...]

    def file(self, type: str) -> MetadataFile | None:
        """The record of this type, or None."""
        return next((file for file in self.files if file.type == type), None)


def parse_repomd(path: Path, *, repository: str) -> Repomd:
    """Parse the repomd.xml at `path`, served by the repository at the URL `repository`.

    Raises NotAYumRepository when the file is not XML or lists no primary metadata,
    MalformedMetadata when it is not well-formed, XMLEntitiesRefused when it uses entities.
    """
    shown_as = f"{REPOMD_PATH} of {repository}"
    if not _starts_like_xml(path):
        raise NotAYumRepository(f"{repository} is not a yum repository: its {REPOMD_PATH} is not XML")
    parsed = cr.Repomd()
    with createrepo_errors(path, shown_as=shown_as):
        cr.xml_parse_repomd(str(path), parsed, None)
    repomd = Repomd(
        revision=_text(parsed.revision),
        checksum=file_checksum(path, "sha256", shown_as=shown_as),
        files=tuple(_metadata_file(record) for record in parsed.records),
    )
    if repomd.file(PRIMARY) is None:
        raise NotAYumRepository(f"{repository} is not a yum repository: its {REPOMD_PATH} lists no primary metadata")
    return repomd


def _metadata_file(record: cr.RepomdRecord) -> MetadataFile:
    # createrepo_c gives 0 for an absent size or timestamp, -1 for an absent open size.
    return MetadataFile(
        type=str(record.type),
        location_href=str(record.location_href or ""),
        checksum_type=_text(record.checksum_type),
        checksum=_text(record.checksum),
        open_checksum_type=_text(record.checksum_open_type),
        open_checksum=_text(record.checksum_open),
        size=int(record.size) or None,
        open_size=int(record.size_open) if record.size_open >= 0 else None,
        timestamp=int(record.timestamp) or None,
    )


def _text(value: object) -> str | None:
    return str(value) if value else None


def _starts_like_xml(path: Path) -> bool:
    """Whether the file starts as an XML document does, and not as a web page."""
    with path.open("rb") as file:
        head = file.read(_HEAD_SIZE).lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith(b"<") and not head.startswith((b"<!doctype html", b"<html"))
