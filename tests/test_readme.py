"""The README's commands and examples stay true: every command and option it shows exists,
every task type it enqueues is registered or defined in the README itself."""

import re
import shlex

import pytest
from django.core.management import get_commands, load_command_class

from tasks import registry
from tests.helpers import ROOT

README = (ROOT / "README.md").read_text()


def command_lines() -> list[list[str]]:
    """The `manage.py` lines of the README's shell blocks; `[optional]` parts dropped, a
    `<placeholder>` given a value."""
    blocks = re.findall(r"```sh\n(.*?)```", README, re.DOTALL)
    code = [line.split("#")[0] for block in blocks for line in block.splitlines()]
    lines = [line.split("manage.py ", 1)[1] for line in code if "manage.py " in line]
    return [shlex.split(re.sub(r"<[^>]*>", "x", re.sub(r"\[[^]]*\]", "", line))) for line in lines]


@pytest.mark.parametrize("words", command_lines(), ids=lambda words: " ".join(words[:2]))
def test_every_command_line_of_the_readme_parses(words):
    name, *args = words
    assert name in get_commands(), f"no command {name}"
    command = load_command_class(get_commands()[name], name)
    parser = command.create_parser("manage.py", name)
    parser.parse_args(args)  # raises on an unknown option or subcommand


def test_every_task_type_the_readme_enqueues_exists():
    defined = set(re.findall(r'@handler\("([^"]+)"', README))
    enqueued = set(re.findall(r'client\.enqueue\("([^"]+)"', README)) | set(re.findall(r"tasks enqueue (\S+)", README))
    assert enqueued, "the README shows how to enqueue"
    assert enqueued - defined - set(registry.types()) == set()
