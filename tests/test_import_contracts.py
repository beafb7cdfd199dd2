"""The import contract of the domain lists the private modules of `tasks` by name: a new module
must be classified, or the domain could import it unchecked."""

import ast
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


def test_the_domain_reaches_no_private_module_through_a_public_one():
    """`import tasks.client` makes `tasks.client.queue` reachable; import-linter sees only imports."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    [contract] = [c for c in config["tool"]["importlinter"]["contracts"] if c.get("source_modules") == ["repositories"]]
    private = {name.removeprefix("tasks.") for name in contract["forbidden_modules"]}
    reached = []
    for path in (ROOT / "repositories").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in private and _dotted(node.value).startswith("tasks."):
                reached.append(f"{path.relative_to(ROOT)}:{node.lineno} {_dotted(node.value)}.{node.attr}")
    assert reached == []


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""
