"""docker/ without a Docker engine: the compose file against the Compose Specification's JSON
schema and what `up` needs, the Dockerfile's promises, and the scripts through their linters."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from check_jsonschema.builtin_schemas import get_builtin_schema

from tests.docker.dockerfile import DOCKER, instructions
from tests.helpers import ROOT

COMPOSE_TEXT = (DOCKER / "compose.yaml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)  # anchors and merge keys resolved, as compose does
APP_SERVICES = ("migrate", "api", "worker")
# The linters' binaries come with their wheels (requirements-dev.txt), beside this Python.
VENV_BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = shutil.which(name, path=f"{VENV_BIN}:/usr/bin:/bin")
    if path is None:
        pytest.skip(f"{name} is not installed (requirements-dev.txt pins it; run `make test` to install it)")
    return path


def schema_errors(document: dict) -> list[str]:
    """Where `document` breaks the Compose Specification's JSON schema (compose-spec/compose-spec,
    Apache-2.0; the copy that the check-jsonschema wheel vendors)."""
    schema = get_builtin_schema("vendor.compose-spec")
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(document)]


def test_the_compose_file_is_valid_against_the_compose_specification():
    assert schema_errors(COMPOSE) == []


def test_the_schema_check_catches_a_mistake():
    api = {**COMPOSE["services"]["api"], "depends_on": {"migrate": {"condition": "service_finished"}}}
    assert schema_errors({**COMPOSE, "services": {**COMPOSE["services"], "api": api}}) != []


def test_up_needs_nothing_set_first():
    # `${NAME:?message}` would stop `up` until NAME is set; `${NAME:-default}` is fine.
    assert re.findall(r"\$\{[A-Z_]+:?\?", COMPOSE_TEXT) == []


def test_postgresql_is_the_official_image_on_a_named_volume_with_a_health_check():
    db = COMPOSE["services"]["db"]
    assert re.fullmatch(r"postgres:\d+", db["image"])
    volume = db["volumes"][0].split(":")[0]
    assert volume in COMPOSE["volumes"]
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])


def test_migrate_runs_once_and_the_api_and_the_worker_wait_for_it_and_a_healthy_database():
    services = COMPOSE["services"]
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    for name in ("api", "worker"):
        assert services[name]["depends_on"] == {
            "db": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }
    assert services["api"]["command"] == ["api"]
    assert services["worker"]["command"] == ["worker"]
    assert services["api"]["ports"] == ["127.0.0.1:8000:8000"]


def test_one_image_for_every_app_service_wired_to_the_database_by_its_url():
    services = COMPOSE["services"]
    images = {(services[name]["image"], str(services[name]["build"])) for name in APP_SERVICES}
    assert len(images) == 1
    for name in APP_SERVICES:
        assert services[name]["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
        assert services[name]["environment"]["DATABASE_URL"].endswith("@db:5432/contentsources")
        assert any(volume.startswith("data:") for volume in services[name]["volumes"])


def test_every_setting_of_env_example_passes_through_to_the_app():
    documented = set(re.findall(r"^#([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    # The compose file sets DATABASE_URL itself; the image sets SECRET_KEY_FILE.
    expected = documented - {"DATABASE_URL", "SECRET_KEY_FILE"}
    assert expected <= set(COMPOSE["services"]["api"]["environment"])


def test_the_dockerfile_keeps_its_promises():
    steps = instructions()
    names = [name for name, _ in steps]
    base = steps[0][1]
    match = re.fullmatch(r"python:3\.(\d+)-slim(-\w+)?", base)
    assert match and int(match.group(1)) >= 12, base
    # The dependencies in a layer of their own, before the code.
    copies = [arguments for name, arguments in steps if name == "COPY"]
    assert copies[0].startswith("requirements.txt") and copies[-1] == ". ."
    pip = next(i for i, (name, arguments) in enumerate(steps) if name == "RUN" and "pip install" in arguments)
    assert pip < steps.index(("COPY", ". ."))
    assert any("collectstatic" in arguments for name, arguments in steps if name == "RUN")
    user = next(arguments for name, arguments in steps if name == "USER")
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) != 0
    assert names.index("USER") > names.index("COPY")
    assert "HEALTHCHECK" in names and "ENTRYPOINT" in names


def test_the_scripts_parse():
    for shell in ("bash", "sh"):
        result = subprocess.run([shell, "-n", str(DOCKER / "entrypoint.sh")], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_shellcheck_finds_nothing_in_the_entrypoint():
    result = subprocess.run([tool("shellcheck"), str(DOCKER / "entrypoint.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_hadolint_finds_nothing_in_the_dockerfile():
    result = subprocess.run(
        [tool("hadolint"), "--no-color", str(DOCKER / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout
