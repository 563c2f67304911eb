"""Runtime and memory per rule, from the files Snakemake's ``benchmark:`` directive writes.

A benchmark file lives at ``benchmarks/{dataset}/{rule}/...tsv`` and holds one
row per run of the job (columns ``s``, ``max_rss`` in MB, ``cpu_time``...).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from lesionseg.io import atomic_path

PathLike = str | os.PathLike


def rule_of(path: PathLike) -> str:
    """The rule a benchmark file belongs to: the folder after ``benchmarks/{dataset}/``."""
    parts = Path(path).parts
    if "benchmarks" not in parts or len(parts) < parts.index("benchmarks") + 4:
        raise ValueError(f"{path}: not a benchmark file of the form benchmarks/<dataset>/<rule>/...")
    return parts[parts.index("benchmarks") + 2]


def read_benchmarks(paths: Sequence[PathLike]) -> pd.DataFrame:
    """One row per job: rule, file, wall seconds, CPU seconds, peak memory (MB); the last run of each job."""
    rows = []
    for path in paths:
        table = pd.read_csv(path, sep="\t")
        last = table.iloc[-1]
        rows.append({"rule": rule_of(path), "file": str(path), "seconds": float(last["s"]),
                     "cpu_seconds": float(last.get("cpu_time", float("nan"))),
                     "max_rss_mb": float(last.get("max_rss", float("nan")))})
    return pd.DataFrame(rows, columns=["rule", "file", "seconds", "cpu_seconds", "max_rss_mb"])


def runtime_table(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per rule, in the order the rules first appear: jobs, total / mean / longest wall time, peak memory."""
    grouped = jobs.groupby("rule", sort=False)
    table = pd.DataFrame({
        "jobs": grouped.size(),
        "total_s": grouped["seconds"].sum(),
        "mean_s": grouped["seconds"].mean(),
        "max_s": grouped["seconds"].max(),
        "cpu_s": grouped["cpu_seconds"].sum(),
        "max_rss_mb": grouped["max_rss_mb"].max(),
    }).round(2)
    return table.reset_index()


def runtime_figure(table: pd.DataFrame, path: PathLike, title: str) -> None:
    """Horizontal bars of the total wall time per rule, labelled with jobs and mean time."""
    figure = Figure(figsize=(8, 0.45 * len(table) + 1.5))
    axes = figure.subplots()
    positions = range(len(table))
    axes.barh(positions, table["total_s"] / 60, color="#4c72b0")
    axes.set_yticks(list(positions), table["rule"])
    axes.invert_yaxis()
    for y, (_, row) in zip(positions, table.iterrows(), strict=True):
        axes.text(row["total_s"] / 60, y, f"  {row['jobs']} jobs, {row['mean_s']:.1f} s each", va="center",
                  fontsize=8)
    axes.set_xlabel("total wall time (min, summed over jobs)")
    axes.set_title(title)
    axes.margins(x=0.35)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120)


def summarise_runtimes(paths: Sequence[PathLike], csv_path: PathLike, png_path: PathLike, title: str) -> pd.DataFrame:
    """Write the per-rule table (CSV) and its bar chart (PNG) for the given benchmark files."""
    table = runtime_table(read_benchmarks(paths))
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    runtime_figure(table, png_path, title)
    return table
