"""The suite's task types (autodiscovered by tasks/apps.py). Each records its runs in the ledger."""

import os
import time

from tasks.registry import handler
from tests.reliability import ledger


def seconds(context) -> float:
    """payload["seconds"]: a number, or a list giving each run its own time (the last repeats),
    so that a test can make a first run long and its rescue short."""
    value = (context.payload or {}).get("seconds", 0)
    if isinstance(value, list):
        value = value[min(ledger.runs_before(context), len(value) - 1)]
    return value


@handler("reliability.work", cancellable=True)
def work(context):
    """Sleep for `seconds`, stopping at once on a cancel or a shutdown."""
    duration = seconds(context)
    entry = ledger.open_run(context)
    try:
        if context.wait(duration):
            context.raise_if_cancelled()
    finally:
        ledger.close_run(entry)


@handler("reliability.slow")
def slow(context):
    """Sleep for `seconds` deaf to stop requests: a step that must finish once begun."""
    duration = seconds(context)
    entry = ledger.open_run(context)
    try:
        time.sleep(duration)
    finally:
        ledger.close_run(entry)


@handler("reliability.crash")
def crash(context):
    """Take the whole process down, every time: a poison task. The run's end is its death."""
    ledger.close_run(ledger.open_run(context))
    os._exit(1)


@handler("reliability.fail")
def fail(context):
    """Raise with payload["message"] and then the characters of payload["codepoints"]: those a
    payload cannot carry (NUL, lone surrogates) but an exception text can."""
    ledger.close_run(ledger.open_run(context))
    payload = context.payload
    raise RuntimeError(payload["message"] + "".join(map(chr, payload.get("codepoints", []))))
