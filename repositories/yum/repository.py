"""A remote yum repository, read through a working directory that the caller owns."""

from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from repositories.exceptions import HTTPNotFound, MalformedMetadata, NotAYumRepository
from repositories.yum.checksum import verify_checksum
from repositories.yum.compression import decompressed
from repositories.yum.content import (
    ContentCounts,
    count_advisories,
    count_comps,
    count_module_streams,
    count_packages,
)
from repositories.yum.fetch import download, redact
from repositories.yum.packages import Package, iter_packages
from repositories.yum.repomd import (
    PRIMARY,
    REPOMD_PATH,
    REPOMD_SIGNATURE_PATH,
    MetadataFile,
    Repomd,
    parse_repomd,
)
from repositories.yum.stopping import StopCheck, never, stop_if_asked
from repositories.yum.urls import file_url

UPDATEINFO = "updateinfo"
MODULES = "modules"
# The same comps.xml, plain or compressed: the first listed is read.
COMPS_TYPES = ("group", "group_gz", "group_xz", "group_zst")


class YumRepository:
    """A yum repository at `url`, read into `directory`: its repomd.xml, then the metadata files
    it lists, each checksum-verified and decompressed (once per type, by `metadata`).

    `should_stop` is handed to every download (see `fetch.download`), decompression and parse:
    once it answers true, they end with Stopped. Every failure is a RepositoryError with a
    one-line message for the user who gave the URL.
    """

    def __init__(self, url: str, directory: Path, *, should_stop: StopCheck = never):
        self.url = file_url(url)
        self.shown_url = redact(self.url)
        self.directory = directory
        self.should_stop = should_stop
        self._repomd: Repomd | None = None
        self._downloaded: dict[str, Path] = {}
        self._opened: dict[str, tuple[Path, str]] = {}

    @property
    def repomd_file(self) -> Path:
        """repomd.xml as served, once `repomd()` has fetched it."""
        return self.directory / "repomd.xml"

    def repomd(self) -> Repomd:
        """repomd.xml, fetched at the first call. Its `checksum` tells whether anything changed."""
        if self._repomd is None:
            path = self.repomd_file
            try:
                download(file_url(self.url, REPOMD_PATH), path, should_stop=self.should_stop)
            except HTTPNotFound as exc:
                raise NotAYumRepository(f"{self.shown_url} is not a yum repository: {exc}") from None
            self._repomd = parse_repomd(path, repository=self.shown_url)
        return self._repomd

    def repomd_signature(self) -> Path | None:
        """repodata/repomd.xml.asc, the detached signature of repomd.xml, as served; None when
        the repository has none (404). Fetch it after `repomd()`, which it signs."""
        path = self.directory / PurePosixPath(REPOMD_SIGNATURE_PATH).name
        try:
            download(file_url(self.url, REPOMD_SIGNATURE_PATH), path, should_stop=self.should_stop)
        except HTTPNotFound:
            return None
        return path

    def download(self, file: MetadataFile) -> Path:
        """Download a file that repomd.xml lists and verify its checksum; the file as served.
        A file is downloaded once, whatever number of calls ask for it."""
        if file.location_href in self._downloaded:
            return self._downloaded[file.location_href]
        shown_as = f"{file.location_href} of {self.shown_url}"
        if not (file.checksum_type and file.checksum):
            raise MalformedMetadata(f"{REPOMD_PATH} of {self.shown_url} gives no checksum for {file.location_href}")
        name = PurePosixPath(file.location_href).name
        if name in ("", ".", "..", PurePosixPath(REPOMD_PATH).name, PurePosixPath(REPOMD_SIGNATURE_PATH).name):
            raise MalformedMetadata(
                f"{REPOMD_PATH} of {self.shown_url} locates {file.type} at {file.location_href!r}, which is not a file"
            )
        path = self.directory / name
        download(file_url(self.url, file.location_href), path, should_stop=self.should_stop)
        verify_checksum(path, file.checksum_type, file.checksum, shown_as=shown_as)
        self._downloaded[file.location_href] = path
        return path

    def metadata(self, type: str) -> Path | None:
        """The decompressed metadata file of this type, or None when repomd.xml lists none."""
        opened = self._open(type)
        return opened[0] if opened is not None else None

    def packages(self) -> Iterator[Package]:
        """The packages of primary.xml, one at a time (see `packages.iter_packages`)."""
        primary, shown_as = self._open_primary()
        return iter_packages(primary, shown_as=shown_as, should_stop=self.should_stop)

    def content_counts(self) -> ContentCounts:
        """How many packages, advisories, groups, environments and module streams it holds."""
        primary, shown_as = self._open_primary()
        packages = count_packages(primary, shown_as=shown_as, should_stop=self.should_stop)
        advisories = groups = environments = module_streams = 0
        if (updateinfo := self._open(UPDATEINFO)) is not None:
            stop_if_asked(self.should_stop, f"parse of {updateinfo[1]}")
            advisories = count_advisories(updateinfo[0], shown_as=updateinfo[1])
        comps_type = next((type for type in COMPS_TYPES if self.repomd().file(type) is not None), None)
        if comps_type is not None and (comps := self._open(comps_type)) is not None:
            groups, environments = count_comps(comps[0], shown_as=comps[1], should_stop=self.should_stop)
        if (modules := self._open(MODULES)) is not None:
            module_streams = count_module_streams(modules[0], shown_as=modules[1], should_stop=self.should_stop)
        return ContentCounts(
            packages=packages,
            advisories=advisories,
            package_groups=groups,
            environments=environments,
            module_streams=module_streams,
        )

    def _open_primary(self) -> tuple[Path, str]:
        opened = self._open(PRIMARY)
        assert opened is not None  # parse_repomd refuses a repomd.xml without primary
        return opened

    def _open(self, type: str) -> tuple[Path, str] | None:
        """The decompressed file of this type and how errors name it, or None if not listed."""
        if type not in self._opened:
            file = self.repomd().file(type)
            if file is None:
                return None
            shown_as = f"{file.location_href} of {self.shown_url}"
            plain = decompressed(self.download(file), shown_as=shown_as, should_stop=self.should_stop)
            self._opened[type] = (plain, shown_as)
        return self._opened[type]
