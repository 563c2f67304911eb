"""A dataset's calibration: its reliability diagram and its table of ECE, MCE and Brier score per method and region.

Both are made from the rule calibrate's tables of each method with probabilities
(:mod:`lesionseg.evaluation.calibration`: the definitions). The diagram follows
the other figures (:mod:`lesionseg.reporting.figures`): the same colour per
method in every figure, a network and its ``+crf`` twin paired (the twin's light
shade of the network's colour, and dashed here).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import pandas as pd
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from lesionseg.evaluation.calibration import ReliabilityHistogram, read_reliability_table
from lesionseg.inference.methods import CRF_SUFFIX
from lesionseg.io import atomic_path
from lesionseg.reporting.figures import _new_figure, _save_png, method_colours

PathLike = str | os.PathLike

TABLE_COLUMNS: tuple[str, ...] = ("method", "region", "subjects", "voxels", "prevalence", "mean_probability", "ece",
                                  "mce", "brier")
"""Columns of a dataset's calibration table (``calibration_summary.csv``): one row per method and region."""


def calibration_table(summaries: Mapping[str, PathLike]) -> pd.DataFrame:
    """The methods' calibration summaries (method -> its ``calibration_summary.csv``) as one table, methods in the
    given order."""
    tables = [pd.read_csv(path).assign(method=method) for method, path in summaries.items()]
    if not tables:
        return pd.DataFrame(columns=list(TABLE_COLUMNS))
    return pd.concat(tables, ignore_index=True)[list(TABLE_COLUMNS)]


def reliability_diagram(histograms: Mapping[str, Mapping[str, ReliabilityHistogram]], regions: Sequence[str],
                        path: PathLike, title: str = "") -> None:
    """One panel per region: each method's observed frequency against its mean probability per bin (non-empty
    bins, joined), the diagonal of perfect calibration, the method's ECE in the legend; under each panel the
    voxels per bin (log scale), faint. ``histograms``: method -> region -> its histogram, methods in order.
    Written atomically as PNG."""
    methods = list(histograms)
    colours = method_colours(methods)
    figure = _new_figure(min(max(4.2 * len(regions), 6.0), 16.0), 6.4)
    grid = figure.add_gridspec(2, len(regions), height_ratios=(3.2, 1.0), hspace=0.08)
    top = bottom = None
    for column, region in enumerate(regions):
        ax = figure.add_subplot(grid[0, column], sharey=top)
        counts_ax = figure.add_subplot(grid[1, column], sharex=ax, sharey=bottom)
        top, bottom = top or ax, bottom or counts_ax
        ax.plot((0, 1), (0, 1), color="#888888", linestyle=":", linewidth=1.2, label="perfect calibration")
        for method in methods:
            histogram = histograms[method].get(region)
            if histogram is None or histogram.total == 0:
                continue
            filled = histogram.count > 0
            style = "--" if method.endswith(CRF_SUFFIX) else "-"
            ax.plot(histogram.mean_probability()[filled], histogram.observed_frequency()[filled], style,
                    color=colours[method], linewidth=1.8, marker="o", markersize=3.5,
                    label=f"{method} (ECE {histogram.ece():.3f})")
            edges = histogram.edges
            counts_ax.stairs(histogram.count, edges, color=colours[method], linestyle=style, linewidth=1.0,
                             fill=False, alpha=0.9)
            counts_ax.stairs(histogram.count, edges, color=colours[method], fill=True, alpha=0.06)
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(0.0, 1.0)
        ax.set_aspect("auto")
        ax.set_title(region, fontsize=12)
        ax.grid(color="#e3e3e3", linewidth=0.7)
        ax.set_axisbelow(True)
        ax.tick_params(labelbottom=False)
        ax.legend(loc="best", fontsize=8, frameon=True, framealpha=0.85)
        if column == 0:
            ax.set_ylabel("observed frequency\n(fraction of the bin's voxels in the region)", fontsize=10)
            counts_ax.set_ylabel("voxels\nper bin", fontsize=9)
        else:
            ax.tick_params(labelleft=False)
            counts_ax.tick_params(labelleft=False)
        counts_ax.set_yscale("log")
        counts_ax.set_xlim(0.0, 1.0)
        counts_ax.grid(axis="y", color="#eeeeee", linewidth=0.6)
        counts_ax.set_xlabel("predicted probability of the region (bin mean)", fontsize=10)
        counts_ax.tick_params(labelsize=8)
        counts_ax.set_xticks(np.linspace(0.0, 1.0, 6))
        if not any(region in h and h[region].total for h in histograms.values()):
            ax.text(0.5, 0.5, "no labelled subject", transform=ax.transAxes, ha="center", va="center",
                    color="#777777")
    key = [Line2D([], [], color="#555555", linestyle="-", label="network"),
           Line2D([], [], color="#555555", linestyle="--", label="network + CRF (lighter shade)"),
           Patch(facecolor="#555555", alpha=0.15, label="voxels per bin (log scale)")]
    figure.legend(handles=key, loc="lower center", ncol=3, frameon=False, fontsize=9, bbox_to_anchor=(0.5, 0.0))
    figure.suptitle(title or "Reliability of the probabilities inside the brain", fontsize=12)
    figure.subplots_adjust(left=0.08, right=0.98, top=0.9, bottom=0.16, wspace=0.12)
    _save_png(figure, path)


def summarise_calibration(dataset: str, bins: Mapping[str, PathLike], summaries: Mapping[str, PathLike],
                          regions: Sequence[str], csv_path: PathLike, png_path: PathLike) -> pd.DataFrame:
    """A dataset's calibration table (:data:`TABLE_COLUMNS`, CSV) and reliability diagram (PNG) from each
    method's reliability table (``bins``: method -> ``calibration.csv``) and summary (``summaries``), methods in
    the given order. Returns the table."""
    table = calibration_table(summaries)
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    subjects = int(table["subjects"].max()) if not table.empty else 0
    histograms = {method: read_reliability_table(path) for method, path in bins.items()}
    n_bins = next((h.n_bins for regions_of in histograms.values() for h in regions_of.values()), 0)
    reliability_diagram(histograms, regions, png_path,
                        title=f"{dataset}: reliability of the probabilities inside the brain "
                              f"({subjects} labelled subject{'s' if subjects != 1 else ''}, {n_bins} bins)")
    return table
