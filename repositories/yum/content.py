"""How much content of each kind a repository holds, as a snapshot records it.

Each count reads one decompressed metadata file: packages from primary.xml and advisories
from updateinfo.xml with createrepo_c; groups and environments from comps.xml, and module
streams from modules.yaml, which createrepo_c does not parse, counted cheaply by streaming.
The ids of each (what a snapshot's added and removed counts compare) are read the same way,
modules.yaml's with PyYAML.
"""

import itertools
from dataclasses import dataclass
from pathlib import Path
from xml.etree.ElementTree import ParseError

import createrepo_c as cr
import yaml
from defusedxml import DefusedXmlException, EntitiesForbidden
from defusedxml.ElementTree import iterparse

from repositories.exceptions import MalformedMetadata
from repositories.yum.packages import iter_packages
from repositories.yum.parsing import createrepo_errors, entities_refused
from repositories.yum.stopping import StopCheck, never, stop_if_asked

# libmodulemd writes each module stream as a YAML document opening with this line.
_MODULE_STREAM_LINE = b"document: modulemd"
# Longest piece of a modules.yaml line read at once, so that a file of one huge line stays cheap.
_LINE_LIMIT = 64 * 1024
# How often (in elements or lines) a count asks whether to stop.
_CHECK_EVERY = 1000
# What tells module streams apart (libmodulemd's NSVCA).
_MODULE_IDENTITY = ("name", "stream", "version", "context", "arch")
# libyaml's loader where PyYAML was built with it, else the pure-Python one.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class ContentCounts:
    """The content of one revision of a repository, by kind."""

    packages: int = 0
    advisories: int = 0
    package_groups: int = 0
    environments: int = 0
    module_streams: int = 0


def count_packages(primary: Path, *, shown_as: str, should_stop: StopCheck = never) -> int:
    """How many packages the decompressed primary.xml lists."""
    return sum(1 for _ in iter_packages(primary, shown_as=shown_as, should_stop=should_stop))


def count_advisories(updateinfo: Path, *, shown_as: str) -> int:
    """How many advisories the decompressed updateinfo.xml lists."""
    return len(advisory_ids(updateinfo, shown_as=shown_as))


def advisory_ids(updateinfo: Path, *, shown_as: str) -> set[str]:
    """The ids of the advisories the decompressed updateinfo.xml lists.

    createrepo_c has no streaming parser for updateinfo: it holds the whole file's advisories.
    """
    info = cr.UpdateInfo()
    with createrepo_errors(updateinfo, shown_as=shown_as):
        cr.xml_parse_updateinfo(str(updateinfo), info, None)
    return {update.id for update in info.updates}


def count_comps(comps: Path, *, shown_as: str, should_stop: StopCheck = never) -> tuple[int, int]:
    """How many package groups and environments the decompressed comps.xml defines."""
    groups, environments = comps_ids(comps, shown_as=shown_as, should_stop=should_stop)
    return len(groups), len(environments)


def comps_ids(comps: Path, *, shown_as: str, should_stop: StopCheck = never) -> tuple[list[str], list[str]]:
    """The ids of the package groups and of the environments the decompressed comps.xml
    defines, in its order (what snapshots compare them by).

    Parsed by the standard library's expat through defusedxml, which refuses entity
    declarations; each top-level element is dropped once read, so memory stays small.
    """
    groups: list[str] = []
    environments: list[str] = []
    depth = 0
    try:
        for position, (event, element) in enumerate(iterparse(str(comps), events=("start", "end")), start=1):
            if position % _CHECK_EVERY == 0:
                stop_if_asked(should_stop, f"parse of {shown_as}")
            if event == "start":
                depth += 1
                continue
            depth -= 1
            if depth == 1:
                if element.tag == "group":
                    groups.append((element.findtext("id") or "").strip())
                elif element.tag == "environment":
                    environments.append((element.findtext("id") or "").strip())
                element.clear()
    except EntitiesForbidden as exc:
        raise entities_refused(shown_as, exc.name) from None
    except DefusedXmlException:
        raise entities_refused(shown_as) from None
    except ParseError as exc:
        raise MalformedMetadata(f"{shown_as} is not well-formed XML ({exc})") from None
    return groups, environments


def count_module_streams(modules: Path, *, shown_as: str, should_stop: StopCheck = never) -> int:
    """How many module streams the decompressed modules.yaml defines (modulemd documents).

    Counted by their opening line rather than parsed: the YAML is only counted here.
    """
    streams = 0
    at_line_start = True
    with modules.open("rb") as file:
        for position in itertools.count(1):
            if not (piece := file.readline(_LINE_LIMIT)):
                break
            if position % _CHECK_EVERY == 0:
                stop_if_asked(should_stop, f"parse of {shown_as}")
            if at_line_start and piece.rstrip() == _MODULE_STREAM_LINE:
                streams += 1
            at_line_start = piece.endswith(b"\n")
    return streams


def module_stream_ids(modules: Path, *, shown_as: str, should_stop: StopCheck = never) -> set[str]:
    """The module streams the decompressed modules.yaml defines, each by its identity
    `name:stream:version:context:arch` (what snapshots compare them by).

    Parsed with PyYAML's safe loader (plain data only), one document at a time; its size is
    bounded by the decompression cap. Documents other than module streams (defaults,
    obsoletes) are skipped.
    """
    ids = set()
    try:
        with modules.open("rb") as file:
            for document in yaml.load_all(file, Loader=_SafeLoader):
                stop_if_asked(should_stop, f"parse of {shown_as}")
                if not isinstance(document, dict) or document.get("document") != "modulemd":
                    continue
                data = document.get("data")
                if not isinstance(data, dict):
                    raise MalformedMetadata(f"{shown_as} has a module stream without its data")
                ids.add(":".join(str(data.get(field, "")) for field in _MODULE_IDENTITY))
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise MalformedMetadata(f"{shown_as} is not valid YAML ({reason})") from None
    return ids
