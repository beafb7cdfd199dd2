"""Who calls the API: the `x-rh-identity` header, base64 of a JSON document whose `identity`
holds the caller's organisation, account and user, as the platform's gateway sets it."""

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied
from rest_framework.request import Request

HEADER = "x-rh-identity"
RED_HAT_ORG, COMMUNITY_ORG = "-1", "-2"
# Organisations that own shared content: every organisation sees their tasks; none acts as one.
RESERVED_ORGS = (RED_HAT_ORG, COMMUNITY_ORG, "-3", "-4")
TEXT_LIMIT = 255


@dataclass(frozen=True)
class Caller:
    """The caller, as DRF's `request.user`."""

    org_id: str
    account_number: str
    user: str

    is_authenticated = True
    is_anonymous = False


class IdentityAuthentication(BaseAuthentication):
    """Decode `x-rh-identity`; a missing or unreadable header is a 401 saying what is wrong."""

    def authenticate(self, request: Request) -> tuple[Caller, None]:
        raw = request.headers.get(HEADER)
        if not raw:
            raise AuthenticationFailed(f"the {HEADER} header is missing")
        try:
            document = json.loads(base64.b64decode(raw, validate=True))
        except (binascii.Error, ValueError, RecursionError):  # RecursionError: nested too deep
            raise AuthenticationFailed(f"the {HEADER} header is not base64 of a JSON document") from None
        identity = document.get("identity") if isinstance(document, dict) else None
        if not isinstance(identity, dict):
            raise AuthenticationFailed(f"the {HEADER} header has no identity")
        internal = identity.get("internal")
        org_id = identity.get("org_id") or (internal.get("org_id") if isinstance(internal, dict) else None)
        if not _text(org_id):
            raise AuthenticationFailed(f"the {HEADER} header has no org_id")
        assert isinstance(org_id, str)
        if org_id in RESERVED_ORGS:
            raise PermissionDenied(f"org_id cannot be {org_id}")
        account = identity.get("account_number")
        user = identity.get("user")
        username = user.get("username") if isinstance(user, dict) else None
        caller = Caller(
            org_id=org_id,
            account_number=account if isinstance(account, str) and _text(account) else "",
            user=username if isinstance(username, str) and _text(username) else "",
        )
        return caller, None

    def authenticate_header(self, request: Request) -> str:
        return HEADER  # makes DRF answer 401, not 403


def caller_of(request: Request) -> Caller:
    """The caller of an authenticated request."""
    caller = request.user
    if not isinstance(caller, Caller):
        raise AuthenticationFailed(f"the {HEADER} header is missing")
    return caller


def encode_identity(*, org_id: str, account_number: str = "", user: str = "") -> str:
    """A header value for this caller: what the gateway would send, for curl and tests."""
    identity: dict[str, Any] = {"org_id": org_id, "internal": {"org_id": org_id}, "type": "User"}
    if account_number:
        identity["account_number"] = account_number
    if user:
        identity["user"] = {"username": user}
    return base64.b64encode(json.dumps({"identity": identity}).encode()).decode()


def _text(value: object) -> bool:
    """A non-blank printable text of at most TEXT_LIMIT characters."""
    if not isinstance(value, str) or not value.strip() or len(value) > TEXT_LIMIT:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return value.isprintable()
