"""The packages of primary.xml, read one at a time by createrepo_c's streaming parser.

Memory stays that of one package whatever the repository's size, so a caller can write them
to the database in batches as they come (`itertools.batched(iter_packages(...), 1000)`).
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import createrepo_c as cr

from repositories.exceptions import MalformedMetadata
from repositories.yum.parsing import createrepo_errors
from repositories.yum.stopping import StopCheck, never, stop_if_asked

# How often (in packages) a parse asks whether to stop.
CHECK_EVERY = 100
_REQUIRED = ("name", "arch", "version", "release", "checksum_type", "checksum", "location_href")


@dataclass(frozen=True, slots=True)
class Package:
    """A package as primary.xml lists it."""

    name: str
    arch: str
    version: str
    release: str
    epoch: int
    checksum_type: str
    checksum: str  # the pkgid: checksum of the RPM file
    summary: str
    location_href: str  # relative to the repository's URL


def iter_packages(primary: Path, *, shown_as: str, should_stop: StopCheck = never) -> Iterator[Package]:
    """Yield the packages of the decompressed primary.xml at `primary`, in file order.

    Each is yielded as soon as the parser has read it, before the rest of the file is parsed:
    a malformed file fails where its fault is, after the packages before it were yielded.
    `shown_as` names the file in errors. Raises MalformedMetadata or XMLEntitiesRefused, and
    Stopped once `should_stop` (asked every CHECK_EVERY packages) answers true.
    """
    with createrepo_errors(primary, shown_as=shown_as):
        # PackageIterator feeds createrepo_c's SAX parser a chunk of the file at a time, and
        # hands out each package its callbacks complete.
        packages = cr.PackageIterator(primary_path=str(primary), filelists_path=None, other_path=None, warningcb=None)
        for position, parsed in enumerate(packages, start=1):
            if position % CHECK_EVERY == 0:
                stop_if_asked(should_stop, f"parse of {shown_as}")
            yield _package(parsed, position, shown_as)


def _package(parsed: cr.Package, position: int, shown_as: str) -> Package:
    fields = {
        "name": parsed.name,
        "arch": parsed.arch,
        "version": parsed.version,
        "release": parsed.release,
        "checksum_type": parsed.checksum_type,
        "checksum": parsed.pkgId,
        "location_href": parsed.location_href,
    }
    missing = [field for field in _REQUIRED if not fields[field]]
    if missing:
        raise MalformedMetadata(f"{shown_as} lists a package (number {position}) without {', '.join(missing)}")
    epoch = parsed.epoch or "0"
    if not (str(epoch).isascii() and str(epoch).isdigit()):
        raise MalformedMetadata(
            f"{shown_as} gives the package {parsed.name} the epoch {epoch!r}, which is not a number"
        )
    return Package(
        name=str(parsed.name),
        arch=str(parsed.arch),
        version=str(parsed.version),
        release=str(parsed.release),
        epoch=int(epoch),
        checksum_type=str(parsed.checksum_type),
        checksum=str(parsed.pkgId),
        summary=str(parsed.summary or ""),
        location_href=str(parsed.location_href),
    )
