"""Content counts for a snapshot: packages, advisories, groups, environments, module streams."""

import re

import pytest

from repositories.exceptions import MalformedMetadata, XMLEntitiesRefused
from repositories.yum import ContentCounts, YumRepository
from repositories.yum.content import comps_ids, count_module_streams, module_stream_ids
from tests.repositories.conftest import BASH, PACKAGES, TMUX
from tests.repositories.hostile import billion_laughs
from tests.repositories.support import exactly
from tests.repositories.yum_builder import (
    Advisory,
    Environment,
    Group,
    ModuleStream,
    build_repository,
    list_metadata,
    unlist_metadata,
)


def test_each_kind_of_content_is_counted(yum_server, repository, work_dir):
    counts = YumRepository(yum_server().url(), work_dir).content_counts()

    assert counts == ContentCounts(packages=3, advisories=2, package_groups=2, environments=1, module_streams=1)


def test_a_repository_url_with_a_query_keeps_it_for_every_file_it_fetches(yum_server, repository, work_dir):
    server = yum_server()

    counts = YumRepository(server.url("?token=a b"), work_dir).content_counts()

    assert counts.packages == 3
    assert server.targets and all(target.endswith("?token=a%20b") for target in server.targets)
    assert "/repodata/repomd.xml?token=a%20b" in server.targets


def test_a_repository_of_packages_only_counts_nothing_else(yum_server, repo_root, work_dir):
    build_repository(repo_root, PACKAGES)

    assert YumRepository(yum_server().url(), work_dir).content_counts() == ContentCounts(packages=3)


@pytest.mark.parametrize("compression", ["xz", "zst"])
def test_comps_listed_only_compressed_is_counted(yum_server, repo_root, work_dir, compression):
    build_repository(
        repo_root,
        PACKAGES,
        groups=[Group("core"), Group("web"), Group("shells")],
        environments=[Environment("server", ("core", "web")), Environment("minimal", ("core",))],
        modules=[ModuleStream("tmux", "3", packages=(TMUX,)), ModuleStream("tmux", "4"), ModuleStream("nginx", "1.24")],
        advisories=[Advisory("RHSA-2024:0001", packages=(BASH,))],
        compression=compression,
    )
    unlist_metadata(repo_root, "group")

    counts = YumRepository(yum_server().url(), work_dir).content_counts()

    assert counts == ContentCounts(packages=3, advisories=1, package_groups=3, environments=2, module_streams=3)


def test_an_entity_bomb_in_comps_is_refused(yum_server, repository, work_dir):
    bomb = billion_laughs("comps", "<comps><group><id>core</id><name>&lol9;</name></group></comps>")
    list_metadata(repository, "group", bomb, "bomb-comps.xml")
    server = yum_server()

    message = (
        f"repodata/bomb-comps.xml of {server.url()} uses XML entities (lol0), which yum metadata never does; "
        "refused as a possible entity bomb"
    )
    with pytest.raises(XMLEntitiesRefused, match=exactly(message)):
        YumRepository(server.url(), work_dir).content_counts()


def test_an_entity_bomb_in_updateinfo_is_refused(yum_server, repository, work_dir):
    bomb = billion_laughs("updates", '<updates><update type="security"><id>&lol9;</id></update></updates>')
    list_metadata(repository, "updateinfo", bomb, "bomb-updateinfo.xml")
    server = yum_server()

    message = (
        f"repodata/bomb-updateinfo.xml of {server.url()} uses XML entities (lol9), which yum metadata never does; "
        "refused as a possible entity bomb"
    )
    with pytest.raises(XMLEntitiesRefused, match=exactly(message)):
        YumRepository(server.url(), work_dir).content_counts()


@pytest.mark.parametrize(
    ("type", "text", "why"),
    [
        (
            "group",
            "<comps><group><id>core</group></comps>",
            "is not well-formed XML (mismatched tag: line 1, column 24)",
        ),
        ("updateinfo", '<?xml version="1.0"?>\n<updates><update', "is not well-formed XML (line 2: "),
    ],
)
def test_malformed_comps_or_updateinfo_is_malformed_metadata(yum_server, repository, work_dir, type, text, why):
    list_metadata(repository, type, text.encode(), f"odd-{type}.xml")
    server = yum_server()

    message = f"repodata/odd-{type}.xml of {server.url()} {why}"
    with pytest.raises(MalformedMetadata, match=f"^{re.escape(message)}"):
        YumRepository(server.url(), work_dir).content_counts()


def test_module_streams_are_counted_by_their_documents_not_their_defaults(tmp_path):
    modules = tmp_path / "modules.yaml"
    modules.write_bytes(
        b"---\ndocument: modulemd\nversion: 2\ndata:\n  name: a\n  description: " + b"x" * 200_000 + b"\n...\n"
        b"---\ndocument: modulemd-defaults\nversion: 1\ndata:\n  module: a\n...\n"
        b"---\ndocument: modulemd\nversion: 2\ndata:\n  name: b\n  description: >-\n    document: modulemd\n...\n"
    )

    assert count_module_streams(modules, shown_as="modules.yaml") == 2


def test_module_streams_are_identified_by_name_stream_version_context_and_arch(tmp_path):
    modules = tmp_path / "modules.yaml"
    modules.write_bytes(
        b"---\ndocument: modulemd\nversion: 2\ndata:\n  name: nodejs\n  stream: '20'\n  version: 9040020240101\n"
        b"  context: rhel9\n  arch: x86_64\n  summary: Node\n...\n"
        b"---\ndocument: modulemd-defaults\nversion: 1\ndata:\n  module: nodejs\n  stream: '20'\n...\n"
        b"---\ndocument: modulemd\nversion: 2\ndata:\n  name: nodejs\n  stream: '20'\n  version: 9040020240101\n"
        b"  context: rhel9\n  arch: aarch64\n...\n"
    )

    assert module_stream_ids(modules, shown_as="modules.yaml") == {
        "nodejs:20:9040020240101:rhel9:x86_64",
        "nodejs:20:9040020240101:rhel9:aarch64",
    }


def test_malformed_modules_yaml_is_malformed_metadata(tmp_path):
    modules = tmp_path / "modules.yaml"
    modules.write_bytes(b"---\ndocument: modulemd\ndata: [unclosed\n")

    with pytest.raises(MalformedMetadata, match=r"^modules\.yaml is not valid YAML \(.+\)$"):
        module_stream_ids(modules, shown_as="modules.yaml")


def test_groups_and_environments_are_identified_by_their_ids(yum_server, repository, work_dir):
    yum = YumRepository(yum_server().url(), work_dir)

    assert comps_ids(yum.metadata("group"), shown_as="comps") == (["core", "shells"], ["minimal"])
