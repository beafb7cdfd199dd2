"""The suite's command-line options, as its modules read them."""

import pytest


def long_minutes(config: pytest.Config) -> float | None:
    """The storm's length in --long mode, None in the bounded (CI) mode."""
    return config.getoption("long_minutes", 10.0) if config.getoption("long", False) else None
