"""Runtime and memory per rule, and the run's wall time, from the files Snakemake's ``benchmark:`` directive writes.

A benchmark file lives at ``benchmarks/{dataset}/{rule}/...tsv``; Snakemake writes it when its job ends, one
row per repeat of the job (columns ``s`` wall seconds, ``cpu_time`` seconds, ``max_rss`` MB, ``NA`` where
nothing was measured). A job's end is therefore the file's modification time and its start that minus its
seconds; the run's wall time is the span from the earliest start to the latest end of the benchmarked jobs
(a job re-run later stretches it, and copying the files without their times breaks it).
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from lesionseg.io import atomic_path

PathLike = str | os.PathLike

JOB_COLUMNS = ["rule", "file", "seconds", "cpu_seconds", "max_rss_mb", "start", "end"]
TABLE_COLUMNS = ["rule", "jobs", "total_s", "mean_s", "min_s", "max_s", "cpu_s", "max_rss_mb"]


def rule_of(path: PathLike) -> str:
    """The rule a benchmark file belongs to: the folder after ``benchmarks/{dataset}/``."""
    parts = Path(path).parts
    if "benchmarks" not in parts or len(parts) < parts.index("benchmarks") + 4:
        raise ValueError(f"{path}: not a benchmark file of the form benchmarks/<dataset>/<rule>/...")
    return parts[parts.index("benchmarks") + 2]


def read_benchmarks(paths: Sequence[PathLike]) -> pd.DataFrame:
    """One row per job: rule, file, wall and CPU seconds (summed over the job's repeats), peak memory (MB), and
    the job's start and end (Unix seconds: the file's modification time, less the wall seconds)."""
    rows = []
    for path in paths:
        table = pd.read_csv(path, sep="\t")
        if table.empty or "s" not in table:
            raise ValueError(f"{path}: not a benchmark file (no row with an 's' column)")
        seconds = float(table["s"].sum())
        end = os.stat(path).st_mtime
        rows.append({"rule": rule_of(path), "file": str(path), "seconds": seconds,
                     "cpu_seconds": float(table["cpu_time"].sum(min_count=1)) if "cpu_time" in table else math.nan,
                     "max_rss_mb": float(table["max_rss"].max()) if "max_rss" in table else math.nan,
                     "start": end - seconds, "end": end})
    return pd.DataFrame(rows, columns=JOB_COLUMNS)


def runtime_table(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per rule, in the order the rules first appear: jobs, total / mean / shortest / longest wall time of a job,
    total CPU time, peak memory (the largest of its jobs')."""
    grouped = jobs.groupby("rule", sort=False)
    table = pd.DataFrame({
        "jobs": grouped.size(),
        "total_s": grouped["seconds"].sum(),
        "mean_s": grouped["seconds"].mean(),
        "min_s": grouped["seconds"].min(),
        "max_s": grouped["seconds"].max(),
        "cpu_s": grouped["cpu_seconds"].sum(min_count=1),
        "max_rss_mb": grouped["max_rss_mb"].max(),
    }).round(2)
    return table.reset_index()[TABLE_COLUMNS]


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")


def run_time(jobs: pd.DataFrame) -> dict[str, Any]:
    """The run's wall time: from the earliest start to the latest end of the benchmarked jobs; with the
    summed job and CPU time (more than the wall time where jobs ran side by side)."""
    if jobs.empty:
        return {"benchmarked_jobs": 0, "wall_s": None, "start": None, "end": None, "job_s": 0.0, "cpu_s": 0.0}
    start, end = float(jobs["start"].min()), float(jobs["end"].max())
    return {"benchmarked_jobs": len(jobs), "wall_s": round(end - start, 2), "start": _timestamp(start),
            "end": _timestamp(end), "job_s": round(float(jobs["seconds"].sum()), 2),
            "cpu_s": round(float(jobs["cpu_seconds"].sum()), 2)}


def format_duration(seconds: float) -> str:
    """``43 s``, ``9.0 min``, ``2.3 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_memory(mb: float) -> str:
    if not math.isfinite(mb):
        return "peak memory not measured"
    return f"peak {mb / 1024:.1f} GB" if mb >= 1024 else f"peak {mb:.0f} MB"


def _row_label(row: Mapping[str, Any]) -> str:
    jobs = int(row["jobs"])
    if jobs == 1:
        per_job = "1 job"
    else:
        per_job = (f"{jobs} jobs of {format_duration(row['min_s'])} to {format_duration(row['max_s'])} "
                   f"(mean {format_duration(row['mean_s'])})")
    return f"{per_job}; {format_memory(row['max_rss_mb'])}"


def runtime_figure(table: pd.DataFrame, path: PathLike, title: str, run: Mapping[str, Any] | None = None,
                   unmeasured: Sequence[str] = ()) -> None:
    """Horizontal bars of the total wall time per rule, each labelled with its jobs' count, shortest and longest
    job and peak memory; the run's wall time in the title, the rules without benchmark files below."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # on use: the overview imports only the formats
    from matplotlib.figure import Figure

    minutes = bool(len(table)) and float(table["total_s"].max()) >= 120
    scale, unit = (60, "min") if minutes else (1, "s")
    figure = Figure(figsize=(10, 0.5 * max(len(table), 1) + 2.2))
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    positions = list(range(len(table)))
    axes.barh(positions, table["total_s"] / scale, color="#4c72b0", height=0.6)
    axes.set_yticks(positions, table["rule"])
    axes.invert_yaxis()
    for y, (_, row) in zip(positions, table.iterrows(), strict=True):
        axes.text(row["total_s"] / scale, y, f"  {format_duration(row['total_s'])}: {_row_label(row)}",
                  va="center", fontsize=9)
    axes.set_xlabel(f"wall time per rule ({unit}, summed over its jobs)")
    if run and run.get("wall_s") is not None:
        title += (f"\nrun: {format_duration(run['wall_s'])} wall time (first benchmarked job's start to the last "
                  f"one's end); {format_duration(run['job_s'])} of jobs")
    axes.set_title(title, fontsize=11)
    # The longest bar takes under half the width: its label fits on its right.
    axes.set_xlim(0, float(table["total_s"].max()) / scale / 0.45 if len(table) else 1)
    axes.grid(axis="x", color="#dddddd", linewidth=0.7)
    axes.set_axisbelow(True)
    if not len(table):
        axes.text(0.5, 0.5, "no benchmarked job", transform=axes.transAxes, ha="center", va="center")
    bottom = 0.0
    if unmeasured:
        note = textwrap.fill("Not measured (rules without a benchmark: directive): " + ", ".join(unmeasured), 150)
        figure.text(0.01, 0.01, note, fontsize=8, color="#555555", va="bottom")
        bottom = (0.15 * (note.count("\n") + 1) + 0.1) / figure.get_figheight()
    figure.tight_layout(rect=(0, bottom, 1, 1))
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100)


def summarise_runtimes(paths: Sequence[PathLike], csv_path: PathLike, png_path: PathLike, title: str,
                       run_path: PathLike | None = None, unmeasured: Sequence[str] = ()) -> pd.DataFrame:
    """Write the per-rule table (CSV), its bar chart (PNG) and, given ``run_path``, the run's wall time (YAML)
    for the given benchmark files."""
    jobs = read_benchmarks(paths)
    table = runtime_table(jobs)
    run = run_time(jobs)
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    if run_path is not None:
        with atomic_path(run_path) as tmp:
            tmp.write_text(yaml.safe_dump(run, sort_keys=False))
    runtime_figure(table, png_path, title, run, unmeasured)
    return table
