"""The OpenAPI schema is true to the views: schemathesis generates requests from it, valid and
not, and checks every answer against it (no 5xx, every status and body documented)."""

import hashlib
import uuid

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from contentsources.api.identity import encode_identity
from tests.api.conftest import API
from tests.api.factories import ORG_A, ConfigurationFactory, RepositoryTaskFactory, SnapshotFactory, TaskFactory

# Bounded: 25 examples an operation, each operation in well under this.
pytestmark = pytest.mark.timeout(60)

SEED = 20261130
CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": SEED,
        "headers": {"x-rh-identity": encode_identity(org_id=ORG_A, account_number="acct-1", user="alice")},
        # A request the schema allows may still be refused with a 400 for what no JSON schema
        # states: a URL that does not normalise, a name the organisation already uses, a
        # snapshot of a repository without snapshots, the cancel of a type that cannot be.
        "checks": {"positive_data_acceptance": {"enabled": False}},
        "generation": {"max-examples": 25, "deterministic": True, "database": "none", "mode": "all"},
    }
)
schema = schemathesis.openapi.from_wsgi(f"{API}openapi.json", get_wsgi_application(), config=CONFIG)


@pytest.fixture
def test_transaction(db):
    """Keep the test's connection, and its transaction, across the requests: as Django's own test
    client does, the app does not close old connections around each (a connection inside a
    transaction looks unusable to it)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def objects(test_transaction) -> dict[str, list[str]]:
    """Objects of the caller's organisation for generated requests to find, beside random ids."""
    configurations = ConfigurationFactory.create_batch(3, org_id=ORG_A)
    SnapshotFactory(repository_configuration=configurations[0])
    tasks = [RepositoryTaskFactory(configuration=configuration) for configuration in configurations]
    tasks.append(TaskFactory(org_id="-1", type="diagnostics.sleep"))
    tasks.append(TaskFactory(org_id=ORG_A, type="diagnostics.sleep", failed=True))
    return {
        "repositories": [str(configuration.uuid) for configuration in configurations],
        "tasks": [str(task.id) for task in tasks],
    }


@schema.parametrize()
# The fixture's objects outlive each example on purpose: they are what the ids find.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
def test_the_api_answers_as_its_schema_says(case, objects):
    generated = (case.path_parameters or {}).get("uuid")
    if isinstance(generated, str) and _is_uuid(generated):
        # Half the valid generated ids (chosen by their own hash, so that the run stays
        # reproducible) become an existing object's: the answers about found objects are checked too.
        digest = hashlib.sha256(generated.encode()).digest()
        known = objects["tasks" if "/tasks/" in case.path else "repositories"]
        if digest[0] % 2:
            case.path_parameters["uuid"] = known[digest[1] % len(known)]
    case.call_and_validate()


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def test_bulk_create_is_described_as_a_list_in_and_a_list_out():
    document = schema.raw_schema
    operation = document["paths"]["/api/content-sources/v1/repositories/bulk_create/"]["post"]
    assert "parameters" not in operation  # no limit or offset: nothing is paginated
    body = operation["requestBody"]
    assert body["required"] is True
    assert body["content"]["application/json"]["schema"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/RepositoryInputRequest"},
        "minItems": 1,
        "maxItems": 100,
    }
    assert operation["responses"]["201"]["content"]["application/json"]["schema"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/Repository"},
    }
    assert "all or none" in operation["description"]
