"""The metadata files that repomd.xml lists: downloaded, checksum-verified, decompressed."""

import gzip
import hashlib
import re

import pytest

from repositories.exceptions import (
    ChecksumMismatch,
    DecompressionBomb,
    MalformedMetadata,
    UnsupportedChecksum,
    UnsupportedCompression,
)
from repositories.yum import YumRepository
from tests.repositories.conftest import PACKAGES
from tests.repositories.hostile import gzip_bomb
from tests.repositories.support import exactly
from tests.repositories.yum_builder import build_repository, list_metadata, record_path
from tests.repositories.yum_server import content


@pytest.mark.parametrize("compression", ["gz", "xz", "bz2", "zst"])
def test_each_compression_is_detected_and_undone(yum_server, repo_root, work_dir, compression):
    build_repository(repo_root, PACKAGES, compression=compression)
    primary_href = record_path(repo_root, "primary").relative_to(repo_root).as_posix()
    assert primary_href.endswith(f"-primary.xml.{compression}")

    repository = YumRepository(yum_server().url(), work_dir)
    primary = repository.metadata("primary")

    assert primary is not None
    assert primary.read_text().startswith('<?xml version="1.0" encoding="UTF-8"?>\n<metadata')
    assert [package.name for package in repository.packages()] == ["bash", "zsh", "tmux"]


def test_a_plain_file_is_read_as_served(yum_server, repository, work_dir):
    comps = YumRepository(yum_server().url(), work_dir).metadata("group")

    assert comps is not None
    assert comps.read_bytes() == record_path(repository, "group").read_bytes()


def test_a_type_that_repomd_does_not_list_is_none(yum_server, repository, work_dir):
    assert YumRepository(yum_server().url(), work_dir).metadata("prestodelta") is None


def test_a_file_that_differs_from_its_checksum_is_refused_naming_both(yum_server, repository, work_dir):
    server = yum_server()
    primary = record_path(repository, "primary")
    href = primary.relative_to(repository).as_posix()
    served = gzip.compress(b'<?xml version="1.0"?><metadata packages="0"/>')
    server.on(f"/{href}", content(served))

    expected = primary.name.split("-")[0]
    actual = hashlib.sha256(served).hexdigest()
    message = f"sha256 checksum mismatch for {href} of {server.url()}: expected {expected}, got {actual}"
    with pytest.raises(ChecksumMismatch, match=exactly(message)):
        YumRepository(server.url(), work_dir).metadata("primary")


def test_an_unknown_checksum_type_is_refused(yum_server, repository, work_dir):
    repomd = repository / "repodata/repomd.xml"
    repomd.write_text(repomd.read_text().replace('<checksum type="sha256">', '<checksum type="crc32">', 1))
    server = yum_server()
    href = YumRepository(server.url(), work_dir).repomd().files[0].location_href

    message = (
        f"{href} of {server.url()} has a checksum of unsupported type 'crc32' "
        "(known: md5, sha, sha1, sha224, sha256, sha384, sha512)"
    )
    with pytest.raises(UnsupportedChecksum, match=exactly(message)):
        YumRepository(server.url(), work_dir).metadata("primary")


def test_a_gzip_bomb_is_cut_off_at_the_decompressed_size_limit(yum_server, repository, settings, work_dir):
    settings.REPOSITORIES = {**settings.REPOSITORIES, "MAX_DECOMPRESSED_SIZE": 1024 * 1024}
    list_metadata(repository, "primary", gzip_bomb(64 * 1024 * 1024), "bomb-primary.xml.gz")
    server = yum_server()

    message = (
        f"repodata/bomb-primary.xml.gz of {server.url()} decompresses to more than 1 MiB "
        "(REPOSITORIES_MAX_DECOMPRESSED_SIZE)"
    )
    with pytest.raises(DecompressionBomb, match=exactly(message)):
        YumRepository(server.url(), work_dir).metadata("primary")
    assert not (work_dir / "bomb-primary.xml").exists()


def test_corrupt_compressed_data_is_malformed_metadata(yum_server, repository, work_dir):
    whole = gzip.compress(b'<?xml version="1.0"?><metadata packages="0"/>')
    # A repository published a file whose trailer (CRC-32 and size) is wrong: its checksum in
    # repomd.xml is right, as it was computed from the bad file.
    list_metadata(repository, "primary", whole[:-8] + bytes(8), "corrupt-primary.xml.gz")
    server = yum_server()

    message = f"repodata/corrupt-primary.xml.gz of {server.url()} is not valid gz data: CRC check failed 0x0 != 0x"
    with pytest.raises(MalformedMetadata, match=f"^{re.escape(message)}[0-9a-f]+$"):
        YumRepository(server.url(), work_dir).metadata("primary")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00ZCK1" + bytes(100), "is compressed with zchunk, which is not supported (use gz, bz2, xz or zst)"),
        (
            b"\x5d\x00\x00\x80\x00" + bytes(100),
            "is compressed with lzma, which is not supported (use gz, bz2, xz or zst)",
        ),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "is neither text nor compressed with gz, bz2, xz or zst"),
    ],
    ids=["zchunk", "lzma", "binary"],
)
def test_an_unsupported_compression_is_named(yum_server, repository, work_dir, data, message):
    list_metadata(repository, "primary", data, "odd-primary.xml.x")
    server = yum_server()

    with pytest.raises(
        UnsupportedCompression, match=exactly(f"repodata/odd-primary.xml.x of {server.url()} {message}")
    ):
        YumRepository(server.url(), work_dir).metadata("primary")


def test_a_record_without_a_checksum_is_not_downloaded(yum_server, repository, work_dir):
    repomd = repository / "repodata/repomd.xml"
    text = repomd.read_text()
    start = text.index('<data type="primary">')
    checksum_start = text.index("<checksum ", start)
    checksum_end = text.index("</checksum>", checksum_start) + len("</checksum>")
    repomd.write_text(text[:checksum_start] + text[checksum_end:])
    server = yum_server()
    href = record_path(repository, "primary").relative_to(repository).as_posix()

    with pytest.raises(
        MalformedMetadata, match=exactly(f"repodata/repomd.xml of {server.url()} gives no checksum for {href}")
    ):
        YumRepository(server.url(), work_dir).metadata("primary")
    assert [path for path, _ in server.requests] == ["/repodata/repomd.xml"]
