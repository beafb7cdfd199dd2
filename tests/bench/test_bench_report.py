"""The bench's table sets pgqueuer's figures under ours and divides ours by its (bench/report.py)."""

from bench import report


def fig(median: float, unit: str = "tasks/s") -> dict:
    return {"median": median, "min": median, "max": median, "runs": [median], "unit": unit}


def drain(rate: float, from_spawn: float) -> dict:
    return {"tasks": 20_000, "rate": fig(rate), "rate_from_spawn": fig(from_spawn), "peak_rss": fig(60, "MiB")}


def latency(p50: float, p99: float) -> dict:
    return {
        "tasks": 200,
        "gap_ms": 20,
        "p50": fig(p50, "ms"),
        "p95": fig(p99, "ms"),
        "p99": fig(p99, "ms"),
        "max": fig(p99, "ms"),
    }


RESULTS = {
    "enqueue": {"single": {"tasks": 5000, "rate": fig(2000)}, "bulk": {"tasks": 20000, "rate": fig(40000)}},
    "drain": {"1x8": drain(4000, 3600), "2x4": drain(4400, 4000)},
    "latency": {**latency(1.5, 3.0), "workers": 8},
    "pgqueuer": {
        "enqueue": {"single": {"tasks": 5000, "rate": fig(1000)}, "bulk": {"tasks": 20000, "rate": fig(20000)}},
        "drain": {"1": drain(2000, 1200), "2": drain(2200, 1000)},
        "latency": latency(3.0, 6.0),
    },
}


def ratio_of(table: str, label: str) -> str:
    (line,) = [line for line in table.splitlines() if line.startswith(f"| ratio | {label} |")]
    return line.split("|")[3].strip()


def test_ratios_are_ours_over_pgqueuers():
    table = report.table(RESULTS)
    assert ratio_of(table, "ENQUEUE one per call: ours / pgqueuer") == "2.00"
    assert ratio_of(table, "DRAIN 1×8 / pgqueuer 1 process, first claim → last finish") == "2.00"
    assert ratio_of(table, "DRAIN 1×8 / pgqueuer 1 process, process spawn → last finish") == "3.00"
    assert ratio_of(table, "DRAIN 2×4 / pgqueuer 2 processes, first claim → last finish") == "2.00"
    assert ratio_of(table, "DRAIN 2×4 / pgqueuer 2 processes, process spawn → last finish") == "4.00"
    assert ratio_of(table, "pickup p50: ours / pgqueuer (below 1: ours quicker)") == "0.50"
    assert ratio_of(table, "pickup p99: ours / pgqueuer (below 1: ours quicker)") == "0.50"
    assert "| pgqueuer DRAIN 2 processes (20,000) | peak RSS per process | 60.0 |" in table


def test_a_skipped_or_absent_peer_adds_no_ratio():
    ours = {key: value for key, value in RESULTS.items() if key != "pgqueuer"}
    assert "pgqueuer" not in report.table(ours)
    table = report.table({**ours, "pgqueuer": {"skipped": "no network\nmore"}})
    assert "| pgqueuer | not measured | | | | skipped: no network |" in table
    assert "ours / pgqueuer" not in table
