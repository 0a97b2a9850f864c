"""Render the results: the Markdown table (stdout and latest.md), the JSON, one PNG.

The files under ``bench/results/`` are committed as the README's evidence, so they are kept small
(sampled series) and stable in name: each run overwrites ``latest.*``.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from bench.common import ROOT, ScenarioResult

RESULTS = ROOT / "bench" / "results"
#: A list of numbers as ``indent`` lays it out: "[" then a newline (never inside a JSON string).
_NUMBER_LIST = re.compile(r"\[(\n[-0-9.eE,\s]+?)\]")


def machine() -> dict[str, Any]:
    """nproc, CPU model and RAM: the context every absolute figure needs."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb: float | None = None
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        ram_gb = round(pages * page_size / 1024**3, 1)
    except (ValueError, OSError):
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gb": ram_gb,
        "python": platform.python_version(),
        "load_average_at_end": [round(value, 2) for value in load] if load else None,
    }


def git_commit() -> str:
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return completed.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_table(results: list[ScenarioResult]) -> str:
    lines = [
        "| Scenario | Figure | Measured | Target | Status |",
        "|---|---|---|---|---|",
    ]
    for result in results:
        if result.error is not None:
            lines.append(f"| {result.name} | crashed | {_cell(result.error)} | | CRASHED |")
        for row in result.rows:
            lines.append(
                f"| {_cell(row.scenario)} | {_cell(row.figure)} | {_cell(row.value)} "
                f"| {_cell(row.target)} | {row.status} |"
            )
    return "\n".join(lines)


def missed(results: list[ScenarioResult]) -> list[str]:
    return [
        f"{row.scenario}: {row.figure}"
        for result in results
        for row in result.rows
        if row.met is False
    ]


def write_markdown(
    results: list[ScenarioResult], meta: dict[str, Any], path: Path = RESULTS / "latest.md"
) -> str:
    info = meta["machine"]
    header = [
        "# Benchmark results (`make bench`)",
        "",
        f"- Date: {meta['date']}",
        f"- Machine: {info['nproc']} CPUs ({info['cpu']}), {info['ram_gb']} GB RAM, "
        f"Python {info['python']}; load average at the end {info['load_average_at_end']} "
        "(shared machine: every figure is a ratio measured in the same run)",
        f"- Commit: {meta['commit']}",
        f"- Total runtime: {meta['total_seconds']:.0f} s",
        "",
    ]
    notes = meta.get("notes", [])
    body = [markdown_table(results), ""]
    if notes:
        body += ["Notes:", "", *(f"- {note}" for note in notes), ""]
    body += [f"Plot: `{Path(meta['plot']).name}`. Raw figures: `latest.json`.", ""]
    text = "\n".join(header + body)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def write_json(results: list[ScenarioResult], meta: dict[str, Any], path: Path) -> None:
    payload = {
        **meta,
        "scenarios": [
            {
                "name": result.name,
                "seconds": round(result.seconds, 1),
                "error": result.error,
                "rows": [
                    {
                        "figure": row.figure,
                        "value": row.value,
                        "target": row.target,
                        "status": row.status,
                    }
                    for row in result.rows
                ],
                "data": result.data,
            }
            for result in results
        ],
    }
    text = json.dumps(payload, indent=1, default=str)
    # Sampled series are lists of small number lists: one line each keeps the file small and
    # still diffable.
    text = _NUMBER_LIST.sub(lambda match: "[" + re.sub(r"\s+", "", match.group(1)) + "]", text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def plot(results: list[ScenarioResult], path: Path) -> bool:
    """RSS over time in the memory runs, cumulative requests over time in the pacing runs, and
    the table formats' ratios to Parquet files: one panel per scenario that ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_name = {result.name: result for result in results}
    memory = next((r for name, r in by_name.items() if name.startswith("4.")), None)
    pacing = next((r for name, r in by_name.items() if name.startswith("2.")), None)
    peers = next((r for name, r in by_name.items() if name.startswith("3.")), None)
    tables = next((r for name, r in by_name.items() if name.startswith("6.")), None)
    panels: list[tuple[Any, Any]] = [
        (draw, result)
        for draw, result in (
            (_plot_peers, peers),
            (_plot_memory, memory),
            (_plot_pacing, pacing),
            (_plot_tables, tables),
        )
        if result is not None
        and result.data
        and (draw is not _plot_tables or result.data.get("ratios"))
        and (draw is not _plot_peers or result.data.get("table"))
        and (draw is not _plot_pacing or result.data.get("runs"))
    ]
    if not panels:
        return False
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for (draw, result), axis in zip(panels, axes[0], strict=True):
        draw(axis, result)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return True


def _plot_memory(left: Any, memory: ScenarioResult) -> None:
    for size, child in memory.data.items():
        samples = child["samples"]
        start = child["run_started"]
        xs = [t - start for t, _rss, _answers in samples]
        ys = [rss / 1024 for _t, rss, _answers in samples]
        peak = child["peak_rss_bytes"] / 1024**2
        left.plot(
            xs,
            ys,
            label=f"{int(size):,} records, {child['requests']:,} requests: peak {peak:.0f} MB",
        )
    left.axvline(0, color="grey", linewidth=0.8, linestyle=":")
    left.set_xlabel("seconds since the operator run started (imports before 0)")
    left.set_ylabel("RSS (MB)")
    left.set_title("Memory: RSS of the operator process (fresh process per size)")
    left.set_ylim(bottom=0)
    left.legend(loc="lower right")
    left.grid(alpha=0.3)


def _plot_peers(axis: Any, peers: ScenarioResult) -> None:
    table = peers.data["table"]
    names = [name for name in table if name not in ("raw", "operator_parquet")]
    width = 0.38
    for offset, place in ((-width / 2, "disk"), (width / 2, "shm")):
        values = [table[name][place]["records_per_second"] for name in names]
        axis.bar([i + offset for i in range(len(names))], values, width, label=place)
    axis.set_xticks(range(len(names)), [name.replace("_", "\n") for name in names])
    axis.set_ylabel("records/s (best round)")
    days = (
        date.fromisoformat(peers.data["window"][1]) - date.fromisoformat(peers.data["window"][0])
    ).days
    axis.set_title(f"Peers, no limit: {peers.data['records']:,} records, {days} daily partitions")
    axis.legend(loc="upper right")
    axis.grid(alpha=0.3, axis="y")


def _plot_pacing(axis: Any, pacing: ScenarioResult) -> None:
    runs = pacing.data["runs"]
    names = list(runs)
    ideal = pacing.data["ideal_requests"]
    axis.bar(
        range(len(names)),
        [runs[n]["requests"] - ideal for n in names],
        0.38,
        label="requests beyond the ideal",
    )
    axis.bar(
        [i + 0.38 for i in range(len(names))],
        [runs[n]["limited"] for n in names],
        0.38,
        label="429 answers",
    )
    axis.set_xticks([i + 0.19 for i in range(len(names))], [n.replace("_", "\n") for n in names])
    limit = pacing.data["limit"]
    axis.set_title(f"Rate limit {limit['burst']} per {limit['window_seconds']:g} s: {ideal} pages")
    axis.legend(loc="upper left")
    axis.grid(alpha=0.3, axis="y")


def _plot_tables(axis: Any, tables: ScenarioResult) -> None:
    """Grouped bars: each table format's figures as a ratio to Parquet files (1 = the same)."""
    ratios: dict[str, dict[str, float]] = tables.data["ratios"]
    figures = list(dict.fromkeys(figure for values in ratios.values() for figure in values))
    width = 0.8 / max(len(ratios), 1)
    for index, (name, values) in enumerate(sorted(ratios.items())):
        xs = [position + index * width for position in range(len(figures))]
        bars = axis.bar(xs, [values.get(figure, 0.0) for figure in figures], width, label=name)
        axis.bar_label(bars, fmt="%.2f", fontsize=8)
    highest = max((value for values in ratios.values() for value in values.values()), default=1)
    axis.set_ylim(0, max(highest, 1.0) * 1.3)  # room for the labels and the legend
    axis.axhline(1, color="grey", linewidth=0.8, linestyle=":")
    axis.set_xticks(
        [position + width * (len(ratios) - 1) / 2 for position in range(len(figures))],
        figures,
        fontsize=8,
    )
    axis.set_ylabel("ratio to Parquet files (same run)")
    axis.set_title("Tables vs Parquet files, 365-day window")
    axis.legend(loc="upper right", ncol=len(ratios))
    axis.grid(alpha=0.3, axis="y")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
