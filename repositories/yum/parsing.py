"""createrepo_c's parse errors, told as the app's: which file, which line, and why.

createrepo_c's SAX handlers define no XML entities, so the first reference to a declared one
(an entity bomb, an external entity) stops the parse before anything is expanded; libxml2 then
says the entity is "not defined".
"""

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import createrepo_c as cr

from repositories.exceptions import MalformedMetadata, RepositoryError, XMLEntitiesRefused

# "Parse error '<path>' at line: 9 (Couldn't find end of Start Tag size\n)"
_PARSE_ERROR = re.compile(r"at line: (?P<line>\d+) \((?P<reason>.*)\)\s*$", re.DOTALL)
_UNDEFINED_ENTITY = re.compile(r"Entity '(?P<name>[^']*)' not defined")


@contextmanager
def createrepo_errors(path: Path, *, shown_as: str) -> Iterator[None]:
    """Turn a createrepo_c error about the file at `path` into MalformedMetadata or
    XMLEntitiesRefused, naming the file as `shown_as` (never by its local path)."""
    try:
        yield
    except cr.CreaterepoCError as exc:
        raise translated(str(exc), path, shown_as=shown_as) from None


def translated(message: str, path: Path, *, shown_as: str) -> RepositoryError:
    match = _PARSE_ERROR.search(message)
    if match is None:
        reason = " ".join(message.replace(str(path), shown_as).split())
        return MalformedMetadata(f"{shown_as} cannot be read: {reason}")
    line, reason = match["line"], " ".join(match["reason"].split())
    entity = _UNDEFINED_ENTITY.search(reason)
    if entity is not None:
        return entities_refused(shown_as, entity["name"])
    return MalformedMetadata(f"{shown_as} is not well-formed XML (line {line}: {reason})")


def entities_refused(shown_as: str, entity: str | None = None) -> XMLEntitiesRefused:
    named = f" ({entity})" if entity else ""
    return XMLEntitiesRefused(
        f"{shown_as} uses XML entities{named}, which yum metadata never does; refused as a possible entity bomb"
    )
