"""primary.xml read package by package through createrepo_c's streaming parser."""

import gzip

import pytest

from repositories.exceptions import MalformedMetadata, XMLEntitiesRefused
from repositories.yum import Package, YumRepository
from tests.repositories.conftest import BASH, PACKAGES, TMUX, ZSH
from tests.repositories.hostile import billion_laughs
from tests.repositories.support import exactly, run_in_fresh_python
from tests.repositories.yum_builder import Pkg, build_repository, list_metadata, record_path


def listed(package: Pkg) -> Package:
    """The record the yum layer should read for a package of the builder."""
    return Package(
        name=package.name,
        arch=package.arch,
        version=package.version,
        release=package.release,
        epoch=package.epoch,
        checksum_type="sha256",
        checksum=package.pkgid,
        summary=package.summary,
        location_href=package.location_href,
    )


def primary_xml(tmp_path, packages) -> str:
    """primary.xml as createrepo_c writes it for these packages."""
    root = build_repository(tmp_path / "scratch", packages)
    return gzip.decompress(record_path(root, "primary").read_bytes()).decode()


def test_each_package_is_read_with_its_nevra_checksum_summary_and_location(yum_server, repository, work_dir):
    packages = list(YumRepository(yum_server().url(), work_dir).packages())

    assert packages == [listed(BASH), listed(ZSH), listed(TMUX)]
    assert packages[1].epoch == 1


def test_a_second_revision_shows_the_packages_gained_and_lost(yum_server, repo_root, tmp_path):
    build_repository(repo_root, PACKAGES, revision="1")
    server = yum_server()
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    first = set(YumRepository(server.url(), tmp_path / "first").packages())

    bash_update = Pkg("bash", "5.2.26", "4.el9", summary=BASH.summary)
    fish = Pkg("fish", "3.7.0", "1.el9", summary="Friendly interactive shell")
    build_repository(repo_root, [bash_update, ZSH, fish], revision="2")
    second = set(YumRepository(server.url(), tmp_path / "second").packages())

    assert second - first == {listed(bash_update), listed(fish)}
    assert first - second == {listed(BASH), listed(TMUX)}


def test_packages_are_yielded_while_the_file_is_still_being_parsed(yum_server, repository, work_dir, tmp_path):
    many = [Pkg(f"package-{number:05d}", summary="x" * 200) for number in range(3000)]
    text = primary_xml(tmp_path, many)
    # Cut inside the last package: the parser meets the fault only at the end of a ~2 MB file.
    cut = text[: text.rindex("<package ") + 40]
    list_metadata(repository, "primary", gzip.compress(cut.encode()), "cut-primary.xml.gz")
    server = yum_server()

    packages = YumRepository(server.url(), work_dir).packages()

    assert next(packages).name == "package-00000"
    with pytest.raises(
        MalformedMetadata, match=rf"^repodata/cut-primary\.xml\.gz of {server.url()} is not well-formed"
    ):
        for package in packages:
            last = package
    assert last.name == "package-02998"


def test_an_entity_bomb_in_primary_is_refused_at_once(yum_server, repository, work_dir, tmp_path):
    text = primary_xml(tmp_path, [BASH])
    body = text[text.index("<metadata") :].replace(f"<summary>{BASH.summary}</summary>", "<summary>&lol9;</summary>")
    list_metadata(repository, "primary", gzip.compress(billion_laughs("metadata", body)), "bomb-primary.xml.gz")
    server = yum_server()

    message = (
        f"repodata/bomb-primary.xml.gz of {server.url()} uses XML entities (lol9), which yum metadata never does; "
        "refused as a possible entity bomb"
    )
    with pytest.raises(XMLEntitiesRefused, match=exactly(message)):
        list(YumRepository(server.url(), work_dir).packages())


def test_an_entity_bomb_in_primary_costs_no_memory(tmp_path):
    text = primary_xml(tmp_path, [BASH])
    body = text[text.index("<metadata") :].replace(f"<summary>{BASH.summary}</summary>", "<summary>&lol9;</summary>")
    bomb = tmp_path / "primary.xml"
    bomb.write_bytes(billion_laughs("metadata", body))

    outcome = run_in_fresh_python(
        "from repositories.yum.packages import iter_packages\nlist(iter_packages(path, shown_as='primary.xml'))\n",
        bomb,
    )

    assert outcome["error"].startswith("XMLEntitiesRefused: primary.xml uses XML entities (lol9)")
    assert outcome["grew_kib"] < 20 * 1024  # the expansion would be 3 GB


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (("<name>zsh</name>", "<name></name>"), "lists a package (number 2) without name"),
        (
            ('<version epoch="1"', '<version epoch="one"'),
            "gives the package zsh the epoch 'one', which is not a number",
        ),
    ],
    ids=["no-name", "bad-epoch"],
)
def test_a_package_record_that_cannot_be_stored_is_malformed(yum_server, repository, work_dir, tmp_path, change, why):
    text = primary_xml(tmp_path, PACKAGES).replace(*change)
    list_metadata(repository, "primary", gzip.compress(text.encode()), "odd-primary.xml.gz")
    server = yum_server()

    with pytest.raises(MalformedMetadata, match=exactly(f"repodata/odd-primary.xml.gz of {server.url()} {why}")):
        list(YumRepository(server.url(), work_dir).packages())
