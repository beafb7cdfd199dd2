"""repomd.xml fetched from a real server and parsed by createrepo_c."""

import re

import pytest

from repositories.exceptions import MalformedMetadata, NotAYumRepository, XMLEntitiesRefused
from repositories.yum import Repomd, YumRepository
from repositories.yum.checksum import file_checksum
from tests.repositories.conftest import BASH, PACKAGES, ZSH
from tests.repositories.hostile import billion_laughs
from tests.repositories.support import exactly, run_in_fresh_python
from tests.repositories.yum_builder import Pkg, build_repository
from tests.repositories.yum_server import content

REPOMD = "/repodata/repomd.xml"


def test_repomd_lists_each_metadata_file_with_what_it_should_be(yum_server, repository, work_dir):
    server = yum_server()

    repomd = YumRepository(server.url(), work_dir).repomd()

    assert repomd.revision == "1"
    assert repomd.checksum == file_checksum(repository / "repodata/repomd.xml", "sha256", shown_as="repomd.xml")
    assert sorted(file.type for file in repomd.files) == [
        "filelists",
        "group",
        "group_gz",
        "modules",
        "other",
        "primary",
        "updateinfo",
    ]
    primary = repomd.file("primary")
    assert primary is not None
    served = repository / primary.location_href
    assert re.fullmatch(r"repodata/[0-9a-f]{64}-primary\.xml\.gz", primary.location_href)
    assert (primary.checksum_type, primary.checksum) == ("sha256", file_checksum(served, "sha256", shown_as="primary"))
    assert primary.size == served.stat().st_size
    assert primary.open_checksum_type == "sha256"
    assert primary.open_size is not None and primary.open_size > primary.size
    assert primary.timestamp is not None and primary.timestamp > 0
    assert repomd.file("prestodelta") is None


def test_a_new_revision_changes_the_checksum_and_an_unchanged_one_keeps_it(yum_server, repo_root, tmp_path):
    build_repository(repo_root, PACKAGES, revision="1700000000")
    server = yum_server()

    def fetch(name: str) -> Repomd:
        (tmp_path / name).mkdir()
        return YumRepository(server.url(), tmp_path / name).repomd()

    before, again = fetch("first"), fetch("again")
    build_repository(repo_root, [BASH, ZSH, Pkg("fish", "3.7.0")], revision="1700086400")
    after = fetch("after")

    assert again.checksum == before.checksum
    assert (before.revision, after.revision) == ("1700000000", "1700086400")
    assert after.checksum != before.checksum


def test_a_url_without_repomd_is_not_a_yum_repository(yum_server, repo_root, work_dir):
    server = yum_server()

    message = f"{server.url()} is not a yum repository: HTTP 404 File not found from {server.url(REPOMD)}"
    with pytest.raises(NotAYumRepository, match=exactly(message)):
        YumRepository(server.url(), work_dir).repomd()


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (
            b"<!DOCTYPE html>\n<html><body><p>Welcome to nginx!<br></p></body></html>",
            "its repodata/repomd.xml is not XML",
        ),
        (b'{"error": "not found"}', "its repodata/repomd.xml is not XML"),
        (b"", "its repodata/repomd.xml is not XML"),
        (b'<?xml version="1.0"?><feed><entry/></feed>', "its repodata/repomd.xml lists no primary metadata"),
        (
            b'<?xml version="1.0"?><repomd xmlns="http://linux.duke.edu/metadata/repo"><revision>7</revision></repomd>',
            "its repodata/repomd.xml lists no primary metadata",
        ),
    ],
    ids=["html", "json", "empty", "other-xml", "no-primary"],
)
def test_something_else_than_repomd_is_not_a_yum_repository(yum_server, repo_root, work_dir, body, why):
    server = yum_server()
    server.on(REPOMD, content(body))

    with pytest.raises(NotAYumRepository, match=exactly(f"{server.url()} is not a yum repository: {why}")):
        YumRepository(server.url("/"), work_dir).repomd()


def test_a_truncated_repomd_is_malformed_xml_naming_the_line(yum_server, repository, work_dir):
    server = yum_server()
    whole = (repository / "repodata/repomd.xml").read_bytes()
    server.on(REPOMD, content(whole[: len(whole) // 2]))

    with pytest.raises(MalformedMetadata) as raised:
        YumRepository(server.url(), work_dir).repomd()
    assert re.fullmatch(
        rf"repodata/repomd\.xml of {re.escape(server.url())} is not well-formed XML \(line \d+: [^\n]+\)",
        str(raised.value),
    )


def test_a_url_given_without_a_trailing_slash_is_the_same_repository(yum_server, repository, work_dir):
    server = yum_server()

    repomd = YumRepository(server.url().rstrip("/"), work_dir).repomd()

    assert repomd.revision == "1"


def test_an_entity_bomb_in_repomd_is_refused_at_once(yum_server, repo_root, work_dir):
    server = yum_server()
    server.on(
        REPOMD,
        content(
            billion_laughs(
                "repomd", '<repomd xmlns="http://linux.duke.edu/metadata/repo"><revision>&lol9;</revision></repomd>'
            )
        ),
    )

    message = (
        f"repodata/repomd.xml of {server.url()} uses XML entities (lol9), which yum metadata never does; "
        "refused as a possible entity bomb"
    )
    with pytest.raises(XMLEntitiesRefused, match=exactly(message)):
        YumRepository(server.url(), work_dir).repomd()


def test_an_entity_bomb_in_repomd_costs_no_memory(tmp_path):
    bomb = tmp_path / "repomd.xml"
    bomb.write_bytes(
        billion_laughs(
            "repomd", '<repomd xmlns="http://linux.duke.edu/metadata/repo"><revision>&lol9;</revision></repomd>'
        )
    )

    outcome = run_in_fresh_python(
        "from repositories.yum.repomd import parse_repomd\n"
        "parse_repomd(path, repository='https://repo.example.com/')\n",
        bomb,
    )

    assert outcome["error"].startswith("XMLEntitiesRefused: repodata/repomd.xml of https://repo.example.com/ uses")
    assert outcome["grew_kib"] < 20 * 1024  # the expansion would be 3 GB
