"""Real yum repositories on disk, written by createrepo_c from packages described in code.

`build_repository(root, packages, ...)` writes `root/repodata/`: repomd.xml and primary,
filelists and other (checksum-named, as createrepo_c names them), and optionally updateinfo,
comps (plain and compressed, as `createrepo -g` lists them) and modules.yaml. Building again
at the same root with other packages and another revision makes the repository's next
revision. No RPM files are written: only the metadata that points at them.
"""

import datetime
import hashlib
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import createrepo_c as cr

COMPRESSIONS = {"gz": cr.GZ, "xz": cr.XZ, "bz2": cr.BZ2, "zst": cr.ZSTD}


@dataclass(frozen=True)
class Pkg:
    """A package as the metadata describes it."""

    name: str
    version: str = "1.0"
    release: str = "1"
    epoch: int = 0
    arch: str = "x86_64"
    summary: str = ""
    files: tuple[str, ...] = ()
    # (author, unix time, text)
    changelog: tuple[tuple[str, int, str], ...] = ()
    checksum: str = ""  # the RPM's sha256; made up from the NEVRA when empty

    @property
    def nevra(self) -> str:
        return f"{self.name}-{self.epoch}:{self.version}-{self.release}.{self.arch}"

    @property
    def pkgid(self) -> str:
        return self.checksum or hashlib.sha256(self.nevra.encode()).hexdigest()

    @property
    def location_href(self) -> str:
        return f"Packages/{self.name[0]}/{self.name}-{self.version}-{self.release}.{self.arch}.rpm"


@dataclass(frozen=True)
class Advisory:
    id: str
    title: str = "An update"
    type: str = "security"
    severity: str = "Important"
    packages: tuple[Pkg, ...] = ()


@dataclass(frozen=True)
class Group:
    id: str
    packages: tuple[str, ...] = ()


@dataclass(frozen=True)
class Environment:
    id: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModuleStream:
    name: str
    stream: str
    version: int = 1
    context: str = "c0ffee42"
    packages: tuple[Pkg, ...] = ()


def build_repository(
    root: Path,
    packages: Iterable[Pkg],
    *,
    advisories: Iterable[Advisory] = (),
    groups: Iterable[Group] = (),
    environments: Iterable[Environment] = (),
    modules: Iterable[ModuleStream] = (),
    compression: str = "gz",
    revision: str = "1",
) -> Path:
    """Write `root/repodata/` for these packages, replacing what was there; return `root`."""
    repodata = root / "repodata"
    shutil.rmtree(repodata, ignore_errors=True)
    repodata.mkdir(parents=True)
    suffix = f".{compression}"
    packages = list(packages)
    paths = {
        "primary": _write_packages(cr.PrimaryXmlFile, repodata / f"primary.xml{suffix}", packages, compression),
        "filelists": _write_packages(cr.FilelistsXmlFile, repodata / f"filelists.xml{suffix}", packages, compression),
        "other": _write_packages(cr.OtherXmlFile, repodata / f"other.xml{suffix}", packages, compression),
    }
    advisories, groups, environments, modules = list(advisories), list(groups), list(environments), list(modules)
    if advisories:
        paths["updateinfo"] = _compressed(repodata / "updateinfo.xml", _updateinfo(advisories), compression)
    if groups or environments:
        comps = _comps(groups, environments)
        paths[f"group_{compression}"] = _compressed(repodata / "comps.xml", comps, compression)
        paths["group"] = repodata / "comps.xml"
        paths["group"].write_text(comps)
    if modules:
        paths["modules"] = _compressed(repodata / "modules.yaml", _modules_yaml(modules), compression)

    repomd = cr.Repomd()
    repomd.set_revision(revision)
    for type, path in paths.items():
        record = cr.RepomdRecord(type, str(path))
        record.fill(cr.SHA256)
        record.rename_file()  # <checksum>-<name>, as repositories publish them
        repomd.set_record(record)
    (repodata / "repomd.xml").write_text(repomd.xml_dump())
    return root


def record_path(root: Path, type: str) -> Path:
    """Where the file that repomd.xml lists for `type` is, under `root`."""
    repomd = cr.Repomd()
    cr.xml_parse_repomd(str(root / "repodata" / "repomd.xml"), repomd, None)
    [href] = [record.location_href for record in repomd.records if record.type == type]
    return root / href


def _write_packages(xml_file: type, path: Path, packages: list[Pkg], compression: str) -> Path:
    writer = xml_file(str(path), compressiontype=COMPRESSIONS[compression])
    writer.set_num_of_pkgs(len(packages))
    for package in packages:
        writer.add_pkg(_createrepo_package(package))
    writer.close()
    return path


def _createrepo_package(package: Pkg) -> cr.Package:
    made = cr.Package()
    made.name = package.name
    made.arch = package.arch
    made.version = package.version
    made.release = package.release
    made.epoch = str(package.epoch)
    made.pkgId = package.pkgid
    made.checksum_type = "sha256"
    made.summary = package.summary
    made.description = package.summary
    made.location_href = package.location_href
    made.files = [("", f"{path.rsplit('/', 1)[0]}/", path.rsplit("/", 1)[1]) for path in package.files]
    made.changelogs = list(package.changelog)
    return made


def _compressed(plain: Path, text: str, compression: str) -> Path:
    """Write `text` compressed to `plain` + the suffix; the plain file is not kept."""
    plain.write_text(text)
    path = plain.with_name(f"{plain.name}.{compression}")
    cr.compress_file(str(plain), str(path), COMPRESSIONS[compression])
    plain.unlink()
    return path


def _updateinfo(advisories: list[Advisory]) -> str:
    info = cr.UpdateInfo()
    for advisory in advisories:
        collection = cr.UpdateCollection()
        collection.shortname = "test"
        collection.name = "Test collection"
        for package in advisory.packages:
            listed = cr.UpdateCollectionPackage()
            listed.name, listed.version, listed.release = package.name, package.version, package.release
            listed.epoch, listed.arch = str(package.epoch), package.arch
            listed.filename = package.location_href.rsplit("/", 1)[1]
            listed.sum, listed.sum_type = package.pkgid, cr.SHA256
            collection.append(listed)
        record = cr.UpdateRecord()
        record.id = advisory.id
        record.title = advisory.title
        record.type = advisory.type
        record.severity = advisory.severity
        record.status = "final"
        record.version = "1"
        record.fromstr = "security@example.com"
        record.issued_date = datetime.datetime(2024, 1, 1)
        record.summary = advisory.title
        record.description = advisory.title
        record.append_collection(collection)
        info.append(record)
    return str(info.xml_dump())


def _comps(groups: list[Group], environments: list[Environment]) -> str:
    comps = ElementTree.Element("comps")
    for group in groups:
        element = ElementTree.SubElement(comps, "group")
        ElementTree.SubElement(element, "id").text = group.id
        ElementTree.SubElement(element, "name").text = group.id
        listed = ElementTree.SubElement(element, "packagelist")
        for name in group.packages:
            ElementTree.SubElement(listed, "packagereq", type="default").text = name
    for environment in environments:
        element = ElementTree.SubElement(comps, "environment")
        ElementTree.SubElement(element, "id").text = environment.id
        ElementTree.SubElement(element, "name").text = environment.id
        listed = ElementTree.SubElement(element, "grouplist")
        for group_id in environment.groups:
            ElementTree.SubElement(listed, "groupid").text = group_id
    header = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<!DOCTYPE comps PUBLIC "-//Red Hat, Inc.//DTD Comps info//EN" "comps.dtd">\n'
    )
    return header + ElementTree.tostring(comps, encoding="unicode")


def _modules_yaml(modules: list[ModuleStream]) -> str:
    """modules.yaml as libmodulemd writes it: one modulemd v2 document per stream."""
    documents = []
    for module in modules:
        artifacts = "".join(f"    - {package.nevra}\n" for package in module.packages)
        documents.append(
            "---\n"
            "document: modulemd\n"
            "version: 2\n"
            "data:\n"
            f"  name: {module.name}\n"
            f'  stream: "{module.stream}"\n'
            f"  version: {module.version}\n"
            f"  context: {module.context}\n"
            "  arch: x86_64\n"
            f"  summary: The {module.name} module\n"
            "  description: >-\n"
            f"    The {module.name} module, stream {module.stream}.\n"
            "  license:\n"
            "    module:\n"
            "    - MIT\n"
            "  artifacts:\n"
            "    rpms:\n"
            f"{artifacts}"
            "...\n"
        )
    defaults = "".join(
        f'---\ndocument: modulemd-defaults\nversion: 1\ndata:\n  module: {name}\n  stream: "{stream}"\n...\n'
        for name, stream in {module.name: module.stream for module in modules}.items()
    )
    return "".join(documents) + defaults


def list_metadata(root: Path, type: str, data: bytes, name: str) -> Path:
    """Write `data` to `repodata/<name>` and make repomd.xml list it as the file of `type`, with
    its true checksum and size: for metadata files that are wrong inside, not in transit."""
    repodata = root / "repodata"
    path = repodata / name
    path.write_bytes(data)
    repomd = cr.Repomd()
    cr.xml_parse_repomd(str(repodata / "repomd.xml"), repomd, None)
    record = cr.RepomdRecord(type, None)
    record.location_href = f"repodata/{name}"
    record.checksum_type = "sha256"
    record.checksum = hashlib.sha256(data).hexdigest()
    record.size = len(data)
    repomd.set_record(record)
    (repodata / "repomd.xml").write_text(repomd.xml_dump())
    return path


def unlist_metadata(root: Path, type: str) -> None:
    """Make repomd.xml list no file of `type` (the file stays)."""
    path = root / "repodata" / "repomd.xml"
    listed = cr.Repomd()
    cr.xml_parse_repomd(str(path), listed, None)
    kept = cr.Repomd()
    kept.set_revision(listed.revision)
    for record in listed.records:
        if record.type != type:
            kept.set_record(record)
    path.write_text(kept.xml_dump())
