"""The bench's results as a table (Markdown, for the terminal and RESULTS.md) and as JSON."""

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from django.db import connection

from bench.stats import ratio

RESULTS_HEADER = "# Benchmark results\n"
RESULTS_INTRO = (
    "Runs of `bench/run.py`, newest first (see bench/README.md). Each figure is the median of the runs, "
    "with min and max.\n"
)


def machine(root: Path) -> dict:
    """What the figures depend on besides the code: the host, its load, the server and its settings."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        version = cursor.fetchone()[0]
        settings = {}
        for name in ("shared_buffers", "synchronous_commit", "fsync", "max_connections"):
            cursor.execute(f"SHOW {name}")
            settings[name] = cursor.fetchone()[0]
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "load_average": [round(load, 2) for load in os.getloadavg()],
        "postgres": version.split(" on ")[0],
        "postgres_settings": settings,
        "python": platform.python_version(),
        "code": _code_version(root),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _code_version(root: Path) -> str:
    """The commit measured, and whether the core (tasks/, contentsources/) differs from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "tasks", "contentsources"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"{commit} (core modified, uncommitted)" if dirty else commit


# --- the table --------------------------------------------------------------------------


def rows(results: dict) -> list[tuple[str, str, dict | None, str]]:
    """(workload, what, figure or None, note) for every reported number."""
    out = []
    if enqueue := results.get("enqueue"):
        out.append(("ENQUEUE", f"one per transaction ({enqueue['single']['tasks']:,})", enqueue["single"]["rate"], ""))
        out.append(("ENQUEUE", f"bulk, one call ({enqueue['bulk']['tasks']:,})", enqueue["bulk"]["rate"], ""))
    if drain := results.get("drain"):
        for layout, result in drain.items():
            processes, workers = layout.split("x")
            name = f"DRAIN {processes}×{workers} ({result['tasks']:,})"
            out.append((name, "first claim → last finish", result["rate"], ""))
            out.append((name, "process spawn → last finish", result["rate_from_spawn"], ""))
            out.append((name, "peak RSS per process", result["peak_rss"], ""))
    if latency := results.get("latency"):
        name = f"LATENCY 1×{latency['workers']} ({latency['tasks']}, {latency['gap_ms']:g} ms apart)"
        for key in ("p50", "p95", "p99", "max"):
            out.append((name, f"pickup {key}", latency[key], ""))
    if scale := results.get("scale"):
        name = f"SCALE ({scale['history']:,} finished, {scale['blocked']:,} blocked)"
        for workers, result in scale["curve"].items():
            out.append((name, f"1×{workers} first claim → last finish", result["rate"], ""))
        for workers, result in scale["curve"].items():
            out.append((name, f"1×{workers} peak RSS", result["peak_rss"], ""))
    if ceiling := results.get("ceiling"):
        if "skipped" in ceiling:
            out.append(("CEILING", "pgbench", None, ceiling["skipped"]))
        else:
            name = f"CEILING (pgbench, {ceiling['clients']} clients, {ceiling['seconds']} s)"
            labels = {
                "insert": "(a) one INSERT per transaction",
                "insert_1client": "(a1) the same from 1 client",
                "claim_finish": "(b) claim + finish, one transaction",
                "claim_finish_2tx": "(b′) claim, then finish: two transactions",
                "claim10_finish": "(c) claim 10 + finish 10, one transaction",
            }
            for key, label in labels.items():
                if key not in ceiling:  # a result file of an older bench
                    continue
                note = "table ran out of tasks: raise the fill" if ceiling[key]["exhausted"] else ""
                out.append((name, label, ceiling[key]["tasks"], note))
    out.extend(peer_rows(results.get("pgqueuer") or {}))
    return out


def peer_rows(peer: dict) -> list[tuple[str, str, dict | None, str]]:
    """pgqueuer's figures, under the names of ours."""
    if "skipped" in peer:
        return [("pgqueuer", "not measured", None, "skipped: " + peer["skipped"].splitlines()[0])]
    out = []
    if enqueue := peer.get("enqueue"):
        single, bulk = enqueue["single"], enqueue["bulk"]
        out.append(("pgqueuer ENQUEUE", f"one per call ({single['tasks']:,})", single["rate"], ""))
        out.append(("pgqueuer ENQUEUE", f"bulk, one call ({bulk['tasks']:,})", bulk["rate"], ""))
    for processes, result in (peer.get("drain") or {}).items():
        name = f"pgqueuer DRAIN {processes} process{'es' if processes != '1' else ''} ({result['tasks']:,})"
        out.append((name, "first pick → last finish", result["rate"], ""))
        out.append((name, "process spawn → last finish", result["rate_from_spawn"], ""))
        out.append((name, "peak RSS per process", result["peak_rss"], ""))
    if latency := peer.get("latency"):
        name = f"pgqueuer LATENCY 1 process ({latency['tasks']}, {latency['gap_ms']:g} ms apart)"
        for key in ("p50", "p95", "p99", "max"):
            out.append((name, f"pickup {key}", latency[key], ""))
    return out


def ratios(results: dict) -> list[tuple[str, float | None]]:
    drain_1x8 = (results.get("drain") or {}).get("1x8", {}).get("rate")
    scale_8 = (results.get("scale") or {}).get("curve", {}).get("8", {}).get("rate")
    ceiling = results.get("ceiling") or {}
    out = []
    single = (results.get("enqueue") or {}).get("single", {}).get("rate")
    if single and "insert_1client" in ceiling:
        out.append(
            ("ENQUEUE one per transaction / CEILING (a1) 1 client", ratio(single, ceiling["insert_1client"]["tasks"]))
        )
    if drain_1x8 and scale_8:
        out.append(("SCALE 1×8 / DRAIN 1×8 on an empty table", ratio(scale_8, drain_1x8)))
    if drain_1x8 and "claim_finish" in ceiling:
        out.append(("DRAIN 1×8 / CEILING (b) claim + finish", ratio(drain_1x8, ceiling["claim_finish"]["tasks"])))
        out.append(
            ("DRAIN 1×8 / CEILING (b′) two transactions", ratio(drain_1x8, ceiling["claim_finish_2tx"]["tasks"]))
        )
        out.append(
            ("DRAIN 1×8 / CEILING (c) claim 10 + finish 10", ratio(drain_1x8, ceiling["claim10_finish"]["tasks"]))
        )
    out.extend(peer_ratios(results))
    return out


def peer_ratios(results: dict) -> list[tuple[str, float | None]]:
    """Ours / pgqueuer's, for each figure both sides have: above 1 ours is faster, except for
    the pickup latencies, where below 1 ours is quicker."""
    peer = results.get("pgqueuer") or {}
    if not peer or "skipped" in peer:
        return []
    out = []
    ours, theirs = results.get("enqueue") or {}, peer.get("enqueue") or {}
    if ours and theirs:
        for key, label in (("single", "one per call"), ("bulk", "bulk, one call")):
            out.append((f"ENQUEUE {label}: ours / pgqueuer", ratio(ours[key]["rate"], theirs[key]["rate"])))
    ours, theirs = results.get("drain") or {}, peer.get("drain") or {}
    for layout, result in ours.items():
        processes = layout.split("x")[0]
        if processes not in theirs:
            continue
        against = f"pgqueuer {processes} process{'es' if processes != '1' else ''}"
        for key, label in (("rate", "first claim → last finish"), ("rate_from_spawn", "process spawn → last finish")):
            out.append(
                (f"DRAIN {layout.replace('x', '×')} / {against}, {label}", ratio(result[key], theirs[processes][key]))
            )
    ours, theirs = results.get("latency") or {}, peer.get("latency") or {}
    if ours and theirs:
        for key in ("p50", "p99"):
            out.append((f"pickup {key}: ours / pgqueuer (below 1: ours quicker)", ratio(ours[key], theirs[key])))
    return out


def table(results: dict) -> str:
    lines = ["| workload | figure | median | min | max | unit |", "|---|---|---:|---:|---:|---|"]
    for workload, what, fig, note in rows(results):
        if fig is None:
            lines.append(f"| {workload} | {what} | | | | {note} |")
            continue
        unit = fig["unit"] + (f" — {note}" if note else "")
        spread = f"{_number(fig['median'])} | {_number(fig['min'])} | {_number(fig['max'])}"
        lines.append(f"| {workload} | {what} | {spread} | {unit} |")
    for what, value in ratios(results):
        lines.append(f"| ratio | {what} | {value:.2f} | | | |" if value is not None else f"| ratio | {what} | | | | |")
    return "\n".join(lines)


def _number(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


# --- files ------------------------------------------------------------------------------


def write_json(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")


def entry(report: dict) -> str:
    """One run as a RESULTS.md section."""
    meta = report["meta"]
    m = meta["machine"]
    load_before = " ".join(f"{x:.2f}" for x in meta["load_before"])
    load_after = " ".join(f"{x:.2f}" for x in m["load_average"])
    lines = [
        f"## {meta['date']}{(' — ' + meta['note']) if meta.get('note') else ''}",
        "",
        f"- command: `{meta['command']}`",
        f"- code: {m['code']}",
        f"- machine: {m['cores']} cores ({m['cpu']}), {m['postgres']} "
        f"(synchronous_commit={m['postgres_settings']['synchronous_commit']}, "
        f"shared_buffers={m['postgres_settings']['shared_buffers']}), Python {m['python']}",
        f"- server: {meta['server']}; load average (1/5/15 min) before {load_before}, after {load_after}",
        *([peer_line(meta["peer"])] if meta.get("peer") else []),
        f"- duration: {meta['seconds']:.0f} s; 1-min load average after each workload: "
        + ", ".join(f"{name} {load:.2f}" for name, load in meta.get("load_after", {}).items()),
        "",
        table(report["results"]),
        "",
    ]
    return "\n".join(lines)


def peer_line(peer: dict) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in peer["versions"].items())
    return (
        f"- peer: {versions}; `pgq run` with its defaults (batch_size {peer['settings']['batch_size']}, "
        "no max_concurrent_tasks, one asyncpg connection per process), "
        f"database {peer['database']} on the same server"
    )


def record(results_md: Path, report: dict) -> None:
    """Add the run at the top of RESULTS.md: newer runs above older ones."""
    text = results_md.read_text() if results_md.exists() else RESULTS_HEADER + "\n" + RESULTS_INTRO
    head, marker, older = text.partition("\n## ")
    older = (marker.lstrip("\n") + older) if marker else ""
    results_md.write_text(head.rstrip("\n") + "\n\n" + entry(report) + ("\n" + older if older else ""))


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
