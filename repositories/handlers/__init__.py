"""The task types of the repositories domain, registered with the framework on import (the
framework imports every app's `handlers` module)."""

from repositories.handlers import delete, introspect, snapshot

__all__ = ["delete", "introspect", "snapshot"]
