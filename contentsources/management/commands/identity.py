"""`manage.py identity --org ORG [--account A] [--user U]`: an x-rh-identity header value, so
that a person can call the API with curl as the gateway would."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from contentsources.api.identity import RESERVED_ORGS, encode_identity


class Command(BaseCommand):
    help = "Print an x-rh-identity header value for an organisation (for curl)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", required=True, help="the organisation id")
        parser.add_argument("--account", default="", help="the account number")
        parser.add_argument("--user", default="", help="the user name")

    def handle(self, *args: Any, org: str, account: str, user: str, **options: Any) -> None:
        for option, value in (("--org", org), ("--account", account), ("--user", user)):
            if not _printable(value) or len(value) > 255:
                raise CommandError(f"{option} must be at most 255 printable characters: {value!r}")
        if not org.strip():
            raise CommandError("--org must not be blank")
        if org in RESERVED_ORGS:
            raise CommandError(f"--org cannot be {org}: the API refuses that organisation as a caller")
        self.stdout.write(encode_identity(org_id=org, account_number=account, user=user))


def _printable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return text.isprintable()
