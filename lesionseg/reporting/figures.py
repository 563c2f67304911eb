"""Figures of the evaluation: score distributions per method and region, and segmentation overlays.

Drawn with matplotlib's Agg canvas (no display, no global pyplot state) and
written atomically as PNG. Colours are fixed per method and per region so
figures compare with each other: a method and its ``+crf`` twin share a hue
(dark without, light with the CRF), and a region has the same colour in every
overlay (WT green, TC yellow, ET red, ...).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lesionseg.io import atomic_path
from lesionseg.labels import LabelScheme
from lesionseg.masks import differs_from_background
from lesionseg.reporting.tables import CRF_SUFFIX, metric_display, method_order, scored_rows

PathLike = str | os.PathLike

DPI = 150
REGION_COLOURS: dict[str, str] = {
    "WT": "#3cd04b",
    "TC": "#ffe119",
    "ET": "#ff3030",
    "RC": "#42a5ff",
    "lesion": "#ff3030",
}
"""Fixed colour of the usual regions; others take :data:`EXTRA_REGION_COLOURS` in scheme order."""
EXTRA_REGION_COLOURS = ("#f58231", "#42d4f4", "#f032e6", "#bfef45", "#fabed4", "#ffffff")
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


def region_colours(regions: Sequence[str]) -> dict[str, str]:
    """Colour of each region: :data:`REGION_COLOURS` for the usual names, then :data:`EXTRA_REGION_COLOURS`."""
    extra = iter(EXTRA_REGION_COLOURS * (len(regions) // len(EXTRA_REGION_COLOURS) + 1))
    return {r: REGION_COLOURS[r] if r in REGION_COLOURS else next(extra) for r in regions}


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
# Overlays


def lesion_slices(truth: np.ndarray | None, prediction: np.ndarray | None, n: int = 3,
                  fallback: np.ndarray | None = None) -> list[int]:
    """Up to ``n`` distinct axial (z, last axis) slice indices through the lesion, ascending.

    The lesion is the union of the non-zero voxels of ``truth`` and
    ``prediction`` (either may be None). Slices are the quantiles at k / (n + 1)
    (25, 50, 75 % for n = 3) of the lesion voxels' z, taken at a voxel so every
    slice holds lesion; where quantiles coincide (a thin or lopsided lesion),
    other lesion slices nearest to the median are added. A lesion on fewer than
    ``n`` slices gives them all. With no lesion the same is done with
    ``fallback`` (e.g. the brain mask), else the grid's middle slice.
    """
    if n < 1:
        raise ValueError(f"need at least one slice, got n={n}")
    masks = [np.asarray(m) != 0 for m in (truth, prediction) if m is not None]
    if not masks:
        raise ValueError("need a truth or a prediction to choose slices")
    if len(masks) == 2 and masks[0].shape != masks[1].shape:
        raise ValueError(f"truth {masks[0].shape} and prediction {masks[1].shape} differ in shape")
    union = masks[0] | masks[1] if len(masks) == 2 else masks[0]
    if not union.any():
        if fallback is None or not np.any(fallback):
            return [union.shape[-1] // 2]
        union = np.asarray(fallback) != 0
    per_slice = union.reshape(-1, union.shape[-1]).sum(axis=0)
    occupied = np.flatnonzero(per_slice)
    if occupied.size <= n:
        return [int(z) for z in occupied]
    z = np.repeat(np.arange(per_slice.size), per_slice)
    chosen = {int(v) for v in np.quantile(z, np.arange(1, n + 1) / (n + 1), method="nearest")}
    median = float(np.median(z))
    for candidate in sorted(occupied, key=lambda s: (abs(s - median), s)):
        if len(chosen) >= n:
            break
        chosen.add(int(candidate))
    return sorted(chosen)


def _window(image: np.ndarray, foreground: np.ndarray) -> tuple[float, float]:
    """Grey window: the 1st and 99th percentiles of the foreground (the whole image if none)."""
    values = image[foreground] if foreground.any() else image.ravel()
    low, high = np.percentile(values, [1, 99])
    return float(low), (float(high) if high > low else float(low) + 1.0)


def _crop(foreground: np.ndarray, margin: int = 4) -> tuple[slice, slice]:
    """In-plane (x, y) bounding box of the foreground over all slices, plus a margin; the whole plane if empty."""
    if not foreground.any():
        return slice(None), slice(None)
    inside = np.argwhere(foreground.any(axis=2))
    low = np.maximum(inside.min(axis=0) - margin, 0)
    high = np.minimum(inside.max(axis=0) + margin + 1, foreground.shape[:2])
    return slice(int(low[0]), int(high[0])), slice(int(low[1]), int(high[1]))


def overlay_figure(
    images: np.ndarray,
    modalities: Sequence[str],
    truth_raw: np.ndarray | None,
    prediction_raw: np.ndarray,
    scheme: LabelScheme,
    path: PathLike,
    n_slices: int = 3,
    title: str = "",
    spacing: Sequence[float] | None = None,
) -> list[int]:
    """Axial slices through the lesion, one row per slice and one column per modality, with the contours of
    every region of ``scheme``: truth solid, prediction dashed, one colour per region.

    ``images`` is (c, x, y, z); ``truth_raw`` (or None: prediction only) and
    ``prediction_raw`` are raw label maps (x, y, z) of the scheme. Slices come
    from :func:`lesion_slices` on the union of the regions (the brain when
    there is no lesion). Each modality is grey with a 1-99 percentile window
    over the brain (voxels that differ from the background value filling the border), cropped to it, shown like a
    viewer's axial plane: the array transposed so that x runs left to right and
    y bottom to top (origin lower); with RAS+ voxel axes that is anterior up and
    the patient's right on the right (neurological convention).
    ``spacing`` (mm per axis) sets the pixel aspect. Written atomically as PNG
    at :data:`DPI`; returns the slice indices shown.
    """
    images = np.asarray(images)
    prediction_raw = np.asarray(prediction_raw)
    if images.ndim != 4 or images.shape[0] != len(modalities):
        raise ValueError(f"images must be (c, x, y, z) with c = {len(modalities)} modalities, got {images.shape}")
    if prediction_raw.shape != images.shape[1:]:
        raise ValueError(f"prediction {prediction_raw.shape} is not on the images' grid {images.shape[1:]}")
    if truth_raw is not None:
        truth_raw = np.asarray(truth_raw)
        if truth_raw.shape != images.shape[1:]:
            raise ValueError(f"truth {truth_raw.shape} is not on the images' grid {images.shape[1:]}")

    regions = list(scheme.regions)
    colours = region_colours(regions)
    predicted = {r: scheme.region_mask(prediction_raw, r) for r in regions}
    true = {r: scheme.region_mask(truth_raw, r) for r in regions} if truth_raw is not None else None

    def union(masks: dict[str, np.ndarray]) -> np.ndarray:
        return np.logical_or.reduce(list(masks.values()))

    foreground = differs_from_background(images)  # z-scored data has a non-zero background
    slices = lesion_slices(union(true) if true is not None else None, union(predicted), n_slices,
                           fallback=foreground)
    crop_x, crop_y = _crop(foreground)
    aspect = float(spacing[1]) / float(spacing[0]) if spacing is not None else 1.0
    windows = [_window(images[c], foreground) for c in range(len(modalities))]

    shape_xy = np.zeros(images.shape[1:3])[crop_x, crop_y].shape
    panel = 2.7
    panel_height = panel * min(max(shape_xy[1] * aspect / shape_xy[0], 0.5), 2.0)
    figure = _new_figure(panel * len(modalities) + 0.5, panel_height * len(slices) + 1.2)
    axes = figure.subplots(len(slices), len(modalities), squeeze=False)
    for row, z in enumerate(slices):
        for column, modality in enumerate(modalities):
            ax = axes[row, column]
            vmin, vmax = windows[column]
            ax.imshow(images[column, crop_x, crop_y, z].T, cmap="gray", vmin=vmin, vmax=vmax, origin="lower",
                      aspect=aspect, interpolation="nearest")
            for region in regions:
                for masks, style, width in ((true, "solid", 1.4), (predicted, "dashed", 1.2)):
                    if masks is None:
                        continue
                    section = masks[region][crop_x, crop_y, z].T
                    if section.any():
                        ax.contour(section.astype(np.float32), levels=[0.5], colors=colours[region],
                                   linestyles=style, linewidths=width)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(modality, fontsize=11)
            if column == 0:
                ax.set_ylabel(f"z = {z}", fontsize=10)

    handles = [Line2D([], [], color=colours[r], linewidth=2.5, label=r) for r in regions]
    if true is not None:
        handles.append(Line2D([], [], color="black", linewidth=1.4, linestyle="solid", label="truth"))
    handles.append(Line2D([], [], color="black", linewidth=1.2, linestyle="dashed", label="prediction"))
    figure.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=9,
                  bbox_to_anchor=(0.5, 0.0))
    heading = title or "Segmentation overlay"
    if true is None:
        heading += " (no truth: prediction only)"
    figure.suptitle(heading, fontsize=12)
    figure.tight_layout(rect=(0, 0.45 / figure.get_figheight(), 1, 1))
    _save_png(figure, path)
    return slices
