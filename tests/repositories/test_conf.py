"""The repositories app's settings: read from the environment, defaults in repositories/conf.py."""

import json
import os
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from repositories.conf import GiB, MiB, RepositoriesSettings, repositories
from tests.helpers import ROOT

READ_SETTINGS = (
    "import django, json; django.setup(); from django.conf import settings; print(json.dumps(settings.REPOSITORIES))"
)


def run_with(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run Python on the project's settings with these environment variables."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith("REPOSITORIES_")}
    environ.update({"DJANGO_SETTINGS_MODULE": "contentsources.settings", "SECRET_KEY": "test", **env})
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60)


def test_the_environment_sets_only_what_it_names_each_parsed_by_its_type():
    done = run_with(
        {
            "REPOSITORIES_FETCH_TIMEOUT": "1m",
            "REPOSITORIES_MAX_DOWNLOAD_SIZE": "1048576",
            "REPOSITORIES_ALLOW_PRIVATE_URLS": "yes",
            "REPOSITORIES_USER_AGENT": "mirror-bot/2",
        },
        "-c",
        READ_SETTINGS,
    )

    assert json.loads(done.stdout) == {
        "ALLOW_PRIVATE_URLS": True,
        "FETCH_TIMEOUT": 60.0,
        "MAX_DOWNLOAD_SIZE": 1048576,
        "USER_AGENT": "mirror-bot/2",
    }


def test_a_bad_environment_value_is_one_line_naming_its_variable():
    done = run_with({"REPOSITORIES_FETCH_TIMEOUT": "soon"}, "manage.py", "check")

    assert done.returncode == 1
    assert done.stderr == (
        "error: REPOSITORIES_FETCH_TIMEOUT: not a duration: 'soon' (use seconds, or a number with ms, s, m, h or d)\n"
    )


def test_the_defaults_live_in_repositories_conf(settings):
    settings.REPOSITORIES = {}
    settings.DEBUG = False
    settings.EMBEDDED_DATABASE = False

    assert repositories() == RepositoriesSettings(
        allow_private_urls=False,
        fetch_timeout=30.0,
        max_download_size=512 * MiB,
        max_decompressed_size=2 * GiB,
        max_redirects=5,
        user_agent="content-sources",
    )


@pytest.mark.parametrize(
    ("debug", "embedded", "given", "allowed"),
    [
        (False, False, {}, False),
        (True, False, {}, True),
        (False, True, {}, True),
        (True, True, {"ALLOW_PRIVATE_URLS": False}, False),
        (False, False, {"ALLOW_PRIVATE_URLS": True}, True),
    ],
)
def test_private_urls_are_allowed_by_default_only_in_debug_or_on_the_embedded_demo(
    settings, debug, embedded, given, allowed
):
    settings.DEBUG, settings.EMBEDDED_DATABASE, settings.REPOSITORIES = debug, embedded, given

    assert repositories().allow_private_urls is allowed


@pytest.mark.parametrize(
    ("given", "error"),
    [
        ({"FETCH_TIMEOUT_SECONDS": 5}, "repositories.E001.*unknown key 'FETCH_TIMEOUT_SECONDS'; the known keys are"),
        ({"FETCH_TIMEOUT": "30s"}, r"repositories.E002.*REPOSITORIES\['FETCH_TIMEOUT'\] must be a number of seconds"),
        (
            {"ALLOW_PRIVATE_URLS": "yes"},
            r"repositories.E002.*REPOSITORIES\['ALLOW_PRIVATE_URLS'\] must be true or false",
        ),
        ({"MAX_REDIRECTS": True}, r"repositories.E002.*REPOSITORIES\['MAX_REDIRECTS'\] must be an integer"),
        ({"FETCH_TIMEOUT": 0}, "repositories.E003.*REPOSITORIES_FETCH_TIMEOUT must be positive"),
        ({"MAX_DECOMPRESSED_SIZE": 0}, "repositories.E003.*REPOSITORIES_MAX_DECOMPRESSED_SIZE must be at least 1 byte"),
        ({"MAX_REDIRECTS": -1}, "repositories.E003.*REPOSITORIES_MAX_REDIRECTS must not be negative"),
    ],
)
def test_a_bad_setting_is_a_check_error(settings, given, error):
    settings.REPOSITORIES = given

    with pytest.raises(SystemCheckError, match=error):
        call_command("check")
