"""Figures of repeated runs: median with min and max, and percentiles of latency samples."""

import math
import statistics
from collections.abc import Sequence


def figure(runs: Sequence[float], unit: str) -> dict:
    """One reported number: the median of the runs, with their spread kept beside it."""
    if not runs:
        raise ValueError("a figure needs at least one run")
    return {
        "median": statistics.median(runs),
        "min": min(runs),
        "max": max(runs),
        "runs": list(runs),
        "unit": unit,
    }


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), interpolated linearly between the closest ranks."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ratio(numerator: dict | None, denominator: dict | None) -> float | None:
    """Median over median, or None when a side was not measured (e.g. under --only)."""
    if not numerator or not denominator or not denominator["median"]:
        return None
    return numerator["median"] / denominator["median"]
