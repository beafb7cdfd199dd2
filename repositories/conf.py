"""Settings of the repositories app: their defaults, read lazily from `settings.REPOSITORIES`.

This module is the one place where the defaults live. `contentsources/settings.py` puts in
`REPOSITORIES` only what the environment sets, each value parsed by the type of its field
here (a float is a duration); a key this module does not know is reported by the system check
`repositories.E001`.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, get_type_hints

MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclass(frozen=True)
class RepositoriesSettings:
    """The app's settings; the environment variable of each is `REPOSITORIES_<NAME>`."""

    # Whether hosts on loopback and private-use addresses may be fetched. Unset: only when DEBUG
    # is on or the project runs on its embedded database (a local demo).
    allow_private_urls: bool
    # Longest wait for a connection, and for each next bytes of an answer.
    fetch_timeout: float = 30.0
    # Longest time one download may take in all, however steadily its bytes come.
    download_timeout: float = 30 * 60.0
    max_download_size: int = 512 * MiB
    max_decompressed_size: int = 2 * GiB
    max_redirects: int = 5
    user_agent: str = "content-sources"
    # How long a stored file that no snapshot references is kept before the garbage collection
    # of the snapshot and delete-repository-snapshots tasks deletes it: far longer than a
    # snapshot run takes, so that the files of one in progress are never collected.
    orphan_file_age: float = 24 * 3600.0


# The type of each setting, by its key.
KNOWN_KEYS: dict[str, type] = {name.upper(): kind for name, kind in get_type_hints(RepositoriesSettings).items()}


def configured() -> Mapping[str, Any]:
    """`settings.REPOSITORIES` as given, or an empty mapping."""
    from django.conf import settings

    given = getattr(settings, "REPOSITORIES", None)
    return given if isinstance(given, Mapping) else {}


def repositories() -> RepositoriesSettings:
    """The app's settings: `settings.REPOSITORIES` over the defaults. Keys it does not know are
    left out here and reported by the system checks."""
    from django.conf import settings

    values = {key.lower(): value for key, value in configured().items() if key in KNOWN_KEYS}
    values.setdefault("allow_private_urls", bool(settings.DEBUG or getattr(settings, "EMBEDDED_DATABASE", False)))
    return RepositoriesSettings(**values)


def format_size(size: int) -> str:
    """A size as the messages about limits show it: `512 MiB`, `2 GiB`, `1500 bytes`."""
    for unit, name in ((GiB, "GiB"), (MiB, "MiB"), (1024, "KiB")):
        if size >= unit:
            return f"{size / unit:.3g} {name}"
    return f"{size} bytes"
