"""The OpenAPI schema describes the API once, under /v1/ (/v1.0/ serves the same views)."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension

from contentsources.api.identity import HEADER

ALIAS = "/api/content-sources/v1.0/"


def drop_alias(endpoints: list[tuple[str, str, str, Any]], **kwargs: Any) -> list[tuple[str, str, str, Any]]:
    """drf-spectacular's preprocessing hook: leave out the /v1.0/ paths."""
    return [endpoint for endpoint in endpoints if not endpoint[0].startswith(ALIAS)]


class IdentityScheme(OpenApiAuthenticationExtension):
    """How the schema tells clients to authenticate: the x-rh-identity header."""

    target_class = "contentsources.api.identity.IdentityAuthentication"
    name = "identity"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": HEADER,
            "description": 'base64 of {"identity": {"org_id": ..., "account_number": ..., "user": ...}}',
        }
