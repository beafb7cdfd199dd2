"""docker/Dockerfile read as instructions, so that the tests check and run what the image does."""

import json
import shlex

from tests.helpers import ROOT

DOCKER = ROOT / "docker"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        name, _, arguments = pending.strip().partition(" ")
        result.append((name.upper(), arguments.strip()))
        pending = ""
    return result


def environment() -> dict[str, str]:
    """The image's ENV, as its containers see it."""
    values: dict[str, str] = {}
    for name, arguments in instructions():
        if name == "ENV":
            values.update(word.split("=", 1) for word in shlex.split(arguments))
    return values


def build_step(command: str) -> tuple[dict[str, str], list[str]]:
    """The environment and the argv of the first command of the RUN step that runs `command`."""
    run = next(arguments for name, arguments in instructions() if name == "RUN" and command in arguments)
    words = shlex.split(run.split("&&")[0])
    env: dict[str, str] = {}
    while words and "=" in words[0]:  # the leading NAME=VALUE assignments
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    return env, words


def exec_form(instruction: str) -> list[str]:
    """The JSON argv of ENTRYPOINT, CMD or HEALTHCHECK, with the image's WORKDIR (where the
    checkout is copied) mapped to the checkout."""
    arguments = next(arguments for name, arguments in instructions() if name == instruction)
    workdir = next(arguments for name, arguments in instructions() if name == "WORKDIR")
    argv = json.loads(arguments[arguments.index("[") :])
    return [str(ROOT / word.removeprefix(workdir + "/")) if word.startswith(workdir + "/") else word for word in argv]
