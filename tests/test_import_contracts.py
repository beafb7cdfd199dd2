"""The import contract of the domain lists the private modules of `tasks` by name: a new module
must be classified, or the domain could import it unchecked."""

import pkgutil
import tomllib

import tasks
from tests.helpers import ROOT

PUBLIC = {"tasks.client", "tasks.registry", "tasks.context", "tasks.exceptions", "tasks.models"}


def test_every_module_of_tasks_is_public_or_forbidden_to_the_domain():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    [contract] = [c for c in config["tool"]["importlinter"]["contracts"] if c.get("source_modules") == ["repositories"]]
    forbidden = set(contract["forbidden_modules"])
    modules = {f"tasks.{module.name}" for module in pkgutil.iter_modules(tasks.__path__)}
    assert modules - PUBLIC - forbidden == set(), "classify these modules in pyproject.toml"
    assert PUBLIC & forbidden == set()
    assert forbidden - modules == set(), "these forbidden modules do not exist"
