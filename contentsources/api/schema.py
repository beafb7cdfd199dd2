"""The OpenAPI schema describes the API once, under /v1/ (/v1.0/ serves the same views), with
every answer a view can give: its errors too, each in the errors envelope."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import force_instance
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.serializers import ListSerializer

from contentsources.api.errors import ErrorsSerializer
from contentsources.api.identity import HEADER

ALIAS = "/api/content-sources/v1.0/"

# Why each error status can answer an operation.
UNAUTHENTICATED = "x-rh-identity is missing or unreadable, or names no organisation"
FORBIDDEN = "the organisation is one of those that own shared content (-1, -2, -3, -4)"
BAD_REQUEST = "a parameter or the body is not valid; each error names its field"
NOT_FOUND = "no such object in the caller's organisation"
UNSUPPORTED = "the body is not JSON"
TOO_LARGE = "the body is larger than DATA_UPLOAD_MAX_MEMORY_SIZE"


def drop_alias(endpoints: list[tuple[str, str, str, Any]], **kwargs: Any) -> list[tuple[str, str, str, Any]]:
    """drf-spectacular's preprocessing hook: leave out the /v1.0/ paths."""
    return [endpoint for endpoint in endpoints if not endpoint[0].startswith(ALIAS)]


class ApiSchema(AutoSchema):
    """The views' schema: UUIDs in paths, and the error answers every operation can give."""

    def get_override_parameters(self) -> list[Any]:
        parameters = list(super().get_override_parameters())
        if "{uuid}" in self.path:
            parameters.append(OpenApiParameter("uuid", OpenApiTypes.UUID, OpenApiParameter.PATH))
        return parameters

    def get_auth(self) -> list[dict[str, Any]]:
        # The identity extension and SPECTACULAR_SETTINGS["SECURITY"] both name the scheme.
        unique: list[dict[str, Any]] = []
        for requirement in super().get_auth():
            if requirement not in unique:
                unique.append(requirement)
        return unique

    def _get_request_for_media_type(self, serializer: Any, direction: Any = "request") -> tuple[Any, bool]:
        """A list serializer's bounds as the array's minItems and maxItems."""
        schema, required = super()._get_request_for_media_type(serializer, direction)
        serializer = force_instance(serializer)
        if isinstance(serializer, ListSerializer) and isinstance(schema, dict):
            for keyword, bound in (("minItems", "min_length"), ("maxItems", "max_length")):
                if getattr(serializer, bound, None) is not None:
                    schema[keyword] = getattr(serializer, bound)
        return schema, required

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        errors = {"401": UNAUTHENTICATED, "403": FORBIDDEN}
        if self._get_parameters() or self._get_request_body():
            errors["400"] = BAD_REQUEST
        if "{uuid}" in self.path:
            errors["404"] = NOT_FOUND
        if self._get_request_body():
            errors["413"] = TOO_LARGE
            errors["415"] = UNSUPPORTED
        for code, description in errors.items():
            responses.setdefault(code, {"description": description})
        for code, response in responses.items():
            if int(code) >= 400:
                enveloped = self._get_response_for_code(ErrorsSerializer, code, direction=direction)
                response["content"] = enveloped["content"]
                response["description"] = response.get("description") or errors.get(code, "")
        return dict(sorted(responses.items()))


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
