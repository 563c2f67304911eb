"""Figures of the evaluation: score distributions per method and region, and the CRF's effect per subject.

Drawn with matplotlib's Agg canvas (no display, no global pyplot state) and
written atomically as PNG. Colours are fixed per method so figures compare with
each other: a method and its ``+crf`` twin share a hue (dark without, light
with the CRF); regions take the colours of their label scheme
(:mod:`lesionseg.labels`), the same in every figure.

The evaluation's tables (pandas, scipy.stats) are imported by the figures that plot them, so that the overlay
pictures (:mod:`lesionseg.reporting.overlays`, once per subject and network) start without them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lesionseg.inference.methods import CRF_SUFFIX
from lesionseg.io import atomic_path

if TYPE_CHECKING:
    import pandas as pd

PathLike = str | os.PathLike

DPI = 150
RATIO_METRICS = frozenset({"dice", "sensitivity", "specificity", "precision"})


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def _save_png(figure: Figure, path: PathLike, dpi: int = DPI) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, format="png")


# --------------------------------------------------------------------------------------------------------------
# Colours


def method_colours(methods: Sequence[str]) -> dict[str, str]:
    """Colour of each method: base methods take the dark colours of ``tab20`` in order; ``M+crf`` takes the
    light twin of ``M``'s colour (or its own pair if ``M`` is not listed)."""
    palette = colormaps["tab20"].colors
    bases: list[str] = []
    for method in methods:
        base = method.removesuffix(CRF_SUFFIX)
        if base not in bases:
            bases.append(base)
    colours = {}
    for method in methods:
        pair = bases.index(method.removesuffix(CRF_SUFFIX)) % 10
        colours[method] = to_hex(palette[2 * pair + (1 if method.endswith(CRF_SUFFIX) else 0)])
    return colours


# --------------------------------------------------------------------------------------------------------------
# Box plots


def dice_boxplot(
    results: pd.DataFrame,
    regions: Sequence[str],
    path: PathLike,
    metric: str = "dice",
    title: str = "",
    seed: int = 0,
) -> None:
    """Box plots of ``metric`` over the subjects with truth: one panel per region, one box per method.

    Boxes span the quartiles with the median as a line and whiskers to 1.5 IQR;
    every subject is a jittered dot (``seed`` fixes the jitter) and the mean a
    white diamond. Ratios (Dice, ...) are drawn on 0..1, distances from 0.
    Written atomically as PNG; with no scored subject, the figure says so.
    """
    from lesionseg.reporting.tables import method_order, metric_display, scored_rows

    scored = scored_rows(results)
    methods = method_order(scored)
    colours = method_colours(methods)
    display = metric_display(metric)
    label = display.label + (f" ({display.unit})" if display.unit else "")
    rng = np.random.default_rng(seed)

    width = min(max(max(2.2 + 0.55 * len(methods), 3.2) * len(regions), 6.0), 16.0)
    figure = _new_figure(width, 4.6)
    axes = figure.subplots(1, len(regions), squeeze=False, sharey=True)[0]
    upper = 0.0
    for ax, region in zip(axes, regions, strict=True):
        rows = scored[scored["region"].astype(str) == region]
        data = [rows.loc[rows["method"].astype(str) == m, metric].dropna().to_numpy(np.float64) * display.scale
                for m in methods]
        positions = np.arange(1, len(methods) + 1)
        drawn = [(p, d, m) for p, d, m in zip(positions, data, methods, strict=True) if d.size]
        if drawn:
            boxes = ax.boxplot(
                [d for _, d, _ in drawn], positions=[p for p, _, _ in drawn], widths=0.6, patch_artist=True,
                showfliers=False, showmeans=True,
                medianprops={"color": "black", "linewidth": 1.4},
                meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": "black", "markersize": 5},
            )
            for patch, (_, _, method) in zip(boxes["boxes"], drawn, strict=True):
                patch.set_facecolor(colours[method])
                patch.set_alpha(0.55)
            for position, values, method in drawn:
                jitter = rng.uniform(-0.17, 0.17, size=values.size)
                ax.scatter(position + jitter, values, s=12, color=colours[method], edgecolors="black",
                           linewidths=0.4, zorder=3, alpha=0.9)
                upper = max(upper, float(values.max()))
        ax.set_xticks(positions)
        ax.set_xticklabels(methods, rotation=30 if max(map(len, methods), default=0) > 8 else 0, ha="right"
                           if max(map(len, methods), default=0) > 8 else "center", fontsize=9)
        ax.set_xlim(0.4, len(methods) + 0.6)
        ax.set_title(region, fontsize=12)
        ax.grid(axis="y", color="#dddddd", linewidth=0.7)
        ax.set_axisbelow(True)
        if not drawn:
            ax.text(0.5, 0.5, "no subject with truth", transform=ax.transAxes, ha="center", va="center",
                    color="#777777")
    if metric in RATIO_METRICS:
        axes[0].set_ylim(0.0, 1.02)
    else:
        axes[0].set_ylim(0.0, upper * 1.05 if upper > 0 else 1.0)
    axes[0].set_ylabel(label, fontsize=11)
    n_subjects = scored["subject"].nunique()
    figure.suptitle(title or f"{label} per region ({n_subjects} test subjects with truth)", fontsize=12)
    key = [Line2D([], [], color="black", linewidth=1.4, label="median"),
           Line2D([], [], marker="D", linestyle="none", markerfacecolor="white", markeredgecolor="black",
                  label="mean"),
           Line2D([], [], marker="o", linestyle="none", markerfacecolor="#999999", markeredgecolor="black",
                  markersize=4, label="subject")]
    figure.legend(handles=key, loc="lower center", ncol=3, frameon=False, fontsize=9,
                  title="box: quartiles, whiskers: 1.5 IQR", title_fontsize=9, bbox_to_anchor=(0.5, 0.0))
    figure.tight_layout(rect=(0, 0.09, 1, 1))
    _save_png(figure, path)


# --------------------------------------------------------------------------------------------------------------
# The CRF's effect per subject

CRF_EFFECT_METRICS: tuple[str, ...] = ("dice", "hd95")


def crf_effect_figure(
    results: pd.DataFrame,
    regions: Sequence[str],
    path: PathLike,
    region_colours: Mapping[str, str],
    title: str = "",
) -> bool:
    """Paired plot of every method with a ``+crf`` twin: one panel per metric of :data:`CRF_EFFECT_METRICS`
    (rows) and region (columns); each subject a line from its score without to its score with the CRF, in the
    region's colour (grey where the CRF made it worse), the means as black diamonds joined by a thick line.

    Written atomically as PNG; with no method evaluated both ways, the figure says so. Returns whether any
    pair was drawn.
    """
    from lesionseg.reporting.tables import crf_paired_values, crf_pairs, metric_display, scored_rows

    scored = scored_rows(results)
    pairs = crf_pairs(scored)
    figure = _new_figure(min(max(2.6 * len(regions) * max(len(pairs), 1) ** 0.5, 6.0), 13.0),
                         2.9 * len(CRF_EFFECT_METRICS) + 0.9)
    axes = figure.subplots(len(CRF_EFFECT_METRICS), len(regions), squeeze=False)
    for row, metric in enumerate(CRF_EFFECT_METRICS):
        display = metric_display(metric)
        for column, region in enumerate(regions):
            ax = axes[row, column]
            ticks, labels = [], []
            for k, (method, crf_method) in enumerate(pairs):
                both = crf_paired_values(scored, method, crf_method, region, metric) * display.scale
                x = (2.5 * k, 2.5 * k + 1)
                for without, with_crf in both.itertuples(index=False):
                    worse = with_crf < without if not display.lower_is_better else with_crf > without
                    ax.plot(x, (without, with_crf), color="#aaaaaa" if worse else region_colours[region],
                            linewidth=1.0, marker="o", markersize=3.5, alpha=0.85)
                if len(both):
                    ax.plot(x, both.mean().to_numpy(), color="black", linewidth=2.2, marker="D", markersize=6,
                            zorder=4)
                ticks += list(x)
                labels += [method, "+crf"]
            ax.set_xticks(ticks, labels, fontsize=8, rotation=20 if len(pairs) > 1 else 0)
            ax.set_xlim(-0.5, 2.5 * max(len(pairs), 1) - 1)
            if metric in RATIO_METRICS:
                ax.set_ylim(0.0, 1.02)
            else:
                ax.set_ylim(bottom=0.0)
            ax.grid(axis="y", color="#dddddd", linewidth=0.7)
            ax.set_axisbelow(True)
            if row == 0:
                ax.set_title(region, fontsize=12)
            if column == 0:
                ax.set_ylabel(display.label + (f" ({display.unit})" if display.unit else "") +
                              (" (lower is better)" if display.lower_is_better else ""), fontsize=10)
            if not pairs:
                ax.text(0.5, 0.5, "no method with and without the CRF", transform=ax.transAxes, ha="center",
                        va="center", color="#777777", fontsize=9)
    key = [Line2D([], [], color="#777777", marker="o", markersize=3.5, label="subject (grey: worse with the CRF)"),
           Line2D([], [], color="black", marker="D", linewidth=2.2, label="mean")]
    figure.legend(handles=key, loc="lower center", ncol=2, frameon=False, fontsize=9, bbox_to_anchor=(0.5, 0.0))
    figure.suptitle(title or "Effect of the CRF per subject", fontsize=12)
    figure.tight_layout(rect=(0, 0.05, 1, 1))
    _save_png(figure, path)
    return bool(pairs)
