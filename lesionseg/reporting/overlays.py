"""Segmentation overlays a radiologist judges at a glance: one figure per subject and method family.

A family is a network and its variants in the run (``deepmedic``, ``deepmedic+crf``, ``deepmedic+pp``,
``deepmedic+crf+pp``), side by side on one axial slice through the lesion, cropped around it. One row per
evaluation region of the label scheme: the modality that shows the region best, the truth filled in the
region's colour, then for each method a map of the voxels it agreed on (the region's colour), missed (truth
not predicted, :data:`MISSED_COLOUR`) and added (predicted, not truth: :data:`EXTRA_COLOUR`), titled with the
subject's Dice of that region. A last column shows the network's uncertainty about the region: the entropy of
the region's probability (0 where it is certain, 1 at 0.5), as a heat map over the image, so that a reader sees
whether the errors lie where the network doubted. Shown in radiological convention (the patient's right on the
viewer's left, anterior up), as a radiologist reads axial images.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps, patheffects
from matplotlib.axes import Axes
from matplotlib.colors import to_hex, to_rgba
from matplotlib.patches import Patch

from lesionseg.evaluation.metrics import dice
from lesionseg.inference.methods import split_method
from lesionseg.inference.uncertainty import normalised_entropy
from lesionseg.io import read_channels, read_image
from lesionseg.labels import LabelScheme
from lesionseg.masks import bounding_box, differs_from_background
from lesionseg.preprocessing.geometry import canonical_grid, to_preprocessing_grid
from lesionseg.reporting.figures import _new_figure, _save_png

PathLike = str | os.PathLike

MISSED_COLOUR = "#00ffff"
"""Truth the method did not predict (cyan: no region colour of the built-in schemes is near it)."""
EXTRA_COLOUR = "#ff00ff"
"""Predicted where the truth has nothing (magenta, likewise)."""
FILL_ALPHA = 0.5
"""Opacity of the region fills: the anatomy under a segmentation stays readable."""
ERROR_ALPHA = 0.8
"""Opacity of missed and extra voxels: the errors are what the eye should find first."""
CROP_MARGIN_MM = 15.0
"""Context shown around the lesion's in-plane bounding box, on each side."""
MIN_CROP_MM = 60.0
"""Smallest field of view: a small lesion is shown with enough brain around it to place it."""
PANEL_INCHES = 2.05
DPI = 130
"""With :data:`PANEL_INCHES`, about 1650 px wide for a family of four methods: the 9.5 pt titles stay legible
when the figure is shown at 1300 px."""
PANEL_TITLE_INCHES = 0.45
"""Room above each panel for its two-line title (method, Dice)."""
SUBTITLE_CHARS_PER_INCH = 13
"""Characters of the 9.5 pt subtitle per inch of figure, where it wraps."""
UNCERTAINTY_COLOURMAP = "inferno"
"""Uncertainty from dark (low) to yellow (high); drawn more opaque as it grows, so certain voxels show the image."""
UNCERTAINTY_ALPHA = 0.9
"""Opacity of the highest uncertainty."""
LEGEND_ENTRY_INCHES = 0.45
LEGEND_CHAR_INCHES = 0.075
"""Width of a legend entry (patch and spacing, then per character), to tell when the legend needs two lines."""


@dataclass(frozen=True)
class Panel:
    """One image of the figure, in display order: row 0 is anterior (top), column 0 the patient's right (left)."""

    title: str
    image: np.ndarray
    window: tuple[float, float]
    fill: np.ndarray | None = None  # RGBA (rows, columns, 4) over the image, transparent where there is nothing


@dataclass(frozen=True)
class OverlayLayout:
    """What the figure shows: a row label and panels per region, on axial slice ``z_index`` cropped to ``crop``."""

    rows: list[tuple[str, list[Panel]]]
    z_index: int
    z_mm: float
    crop: tuple[slice, slice]
    size_mm: tuple[float, float]  # (width, height) of every panel
    has_truth: bool
    through_lesion: bool  # False: no truth or prediction anywhere, the slice is the brain's middle
    legend: list[tuple[str, str]]  # (colour, label)
    has_uncertainty: bool = False  # a last column of the network's uncertainty per region


# --------------------------------------------------------------------------------------------------------------
# Where to look


def lesion_slice(lesion: np.ndarray | None, brain: np.ndarray) -> int:
    """Axial index (last axis) where ``lesion`` has its largest cross-section; the middle of the brain's axial
    extent when there is no lesion, the grid's middle slice when there is no brain either."""
    if lesion is not None and lesion.any():
        return int(np.argmax(lesion.sum(axis=(0, 1))))
    box = bounding_box(brain)
    if box is None:
        return brain.shape[2] // 2
    return (box[2].start + box[2].stop - 1) // 2


def lesion_crop(section: np.ndarray, spacing: Sequence[float], margin_mm: float = CROP_MARGIN_MM,
                min_mm: float = MIN_CROP_MM) -> tuple[slice, slice]:
    """In-plane (x, y) window around the mask ``section``: a square (in mm) on its bounding box plus ``margin_mm``
    on each side, at least ``min_mm`` wide, moved inside the plane where it overhangs one edge and clipped to it.
    The whole plane when ``section`` is empty."""
    box = bounding_box(section)
    if box is None:
        return slice(0, section.shape[0]), slice(0, section.shape[1])
    extents_mm = [(b.stop - b.start) * float(s) for b, s in zip(box, spacing, strict=True)]
    side_mm = max(max(extents_mm) + 2 * margin_mm, min_mm)
    window = []
    for b, s, n in zip(box, spacing, section.shape, strict=True):
        width = min(int(np.ceil(side_mm / float(s))), n)
        start = int(round((b.start + b.stop - width) / 2))
        start = min(max(start, 0), n - width)
        window.append(slice(start, start + width))
    return window[0], window[1]


def grey_window(image: np.ndarray, brain: np.ndarray) -> tuple[float, float]:
    """Display range of a modality: the 1st and 99th percentiles inside the brain (everything if it is empty),
    so a constant background (0, or negative once z-scored) neither washes out nor darkens the brain."""
    values = image[brain] if brain.any() else image.ravel()
    low, high = (float(v) for v in np.percentile(values, [1, 99]))
    return low, (high if high > low else low + 1.0)


def world_z(affine: np.ndarray, crop: tuple[slice, slice], z_index: int) -> float:
    """World (RAS+) z in mm of the axial slice ``z_index``, at the centre of the crop (an oblique grid's axial
    slice is not at one height)."""
    centre = np.array([(crop[0].start + crop[0].stop - 1) / 2, (crop[1].start + crop[1].stop - 1) / 2, z_index, 1])
    return float((affine @ centre)[2])


# --------------------------------------------------------------------------------------------------------------
# What to show


def radiological(section: np.ndarray) -> np.ndarray:
    """An axial (x, y) section of a RAS+ grid in display order: rows anterior to posterior, columns from the
    patient's right to left (radiological convention)."""
    return np.ascontiguousarray(section[::-1, ::-1].T)


def filled(mask: np.ndarray, colour: str, alpha: float = FILL_ALPHA) -> np.ndarray:
    """RGBA image of ``mask`` in ``colour``, transparent elsewhere."""
    rgba = np.zeros(mask.shape + (4,), dtype=np.float32)
    rgba[mask] = to_rgba(colour, alpha)
    return rgba


def heat(values: np.ndarray) -> np.ndarray:
    """RGBA heat map of ``values`` in [0, 1]: :data:`UNCERTAINTY_COLOURMAP`, transparent at 0."""
    values = np.clip(values, 0.0, 1.0)
    rgba = colormaps[UNCERTAINTY_COLOURMAP](values).astype(np.float32)
    rgba[..., 3] = UNCERTAINTY_ALPHA * values
    return rgba


def region_uncertainty(probabilities: np.ndarray, scheme: LabelScheme, region: str) -> np.ndarray:
    """Entropy (in [0, 1]) of a region's probability, the sum of its classes' in ``(class, x, y, z)``
    probabilities: how unsure a method is whether a voxel belongs to the region."""
    inside = np.clip(scheme.region_probability(probabilities, region), 0.0, 1.0)
    return normalised_entropy(np.stack([inside, 1.0 - inside]))


def agreement(truth: np.ndarray, prediction: np.ndarray, colour: str) -> np.ndarray:
    """RGBA map of a prediction against the truth: agreed voxels in ``colour``, missed ones in
    :data:`MISSED_COLOUR`, extra ones in :data:`EXTRA_COLOUR`."""
    rgba = filled(truth & prediction, colour)
    rgba[truth & ~prediction] = to_rgba(MISSED_COLOUR, ERROR_ALPHA)
    rgba[prediction & ~truth] = to_rgba(EXTRA_COLOUR, ERROR_ALPHA)
    return rgba


def family_name(methods: Sequence[str]) -> str:
    """The network all ``methods`` are variants of (``deepmedic`` for ``deepmedic+crf+pp``)."""
    networks = {split_method(m)[0] for m in methods}
    if len(networks) != 1:
        raise ValueError(f"methods {list(methods)} are not variants of one network (networks {sorted(networks)})")
    return networks.pop()


def overlay_layout(
    images: np.ndarray,
    modalities: Sequence[str],
    truth_raw: np.ndarray | None,
    segmentations: Sequence[tuple[str, np.ndarray]],
    scheme: LabelScheme,
    affine: np.ndarray,
    uncertainty: tuple[str, np.ndarray] | None = None,
) -> OverlayLayout:
    """The panels of a family's figure (see the module's description).

    ``images`` is (c, x, y, z) on a RAS+ grid with voxel-to-world ``affine``; ``truth_raw`` (None: unlabelled
    subject) and each segmentation are raw label maps of ``scheme`` on that grid, ``segmentations`` ordered as
    the panels. ``uncertainty``: a method and its class probabilities ``(class, x, y, z)`` on that grid, shown
    in a last column as each region's uncertainty. The slice is where the largest region (truth and predictions
    together) has its largest cross-section; the crop holds every region's truth and predictions on it.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[0] != len(modalities):
        raise ValueError(f"images must be (c, x, y, z) with c = {len(modalities)} modalities, got {images.shape}")
    if not segmentations:
        raise ValueError("no segmentation to show")
    labelled = list(segmentations) if truth_raw is None else [("truth", truth_raw), *segmentations]
    for name, raw in labelled:
        if np.shape(raw) != images.shape[1:]:
            raise ValueError(f"{name} {np.shape(raw)} is not on the images' grid {images.shape[1:]}")
    if uncertainty is not None and np.shape(uncertainty[1])[1:] != images.shape[1:]:
        raise ValueError(f"the probabilities of {uncertainty[0]} {np.shape(uncertainty[1])[1:]} are not on the "
                         f"images' grid {images.shape[1:]}")

    regions = list(scheme.regions)
    truth = {r: scheme.region_mask(truth_raw, r) for r in regions} if truth_raw is not None else None
    predicted = [{r: scheme.region_mask(raw, r) for r in regions} for _, raw in segmentations]
    every = predicted if truth is None else [truth, *predicted]
    unions = {r: np.logical_or.reduce([masks[r] for masks in every]) for r in regions}
    brain = differs_from_background(images)  # z-scored data has a non-zero background
    largest = max(regions, key=lambda r: int(np.count_nonzero(unions[r])))
    z = lesion_slice(unions[largest], brain)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    lesion_section = np.logical_or.reduce([unions[r][:, :, z] for r in regions])
    crop = lesion_crop(lesion_section if lesion_section.any() else brain[:, :, z], spacing[:2])

    def shown(volume: np.ndarray) -> np.ndarray:
        return radiological(volume[crop[0], crop[1], z])

    rows = []
    for region in regions:
        colour = scheme.region_colours[region]
        modality = scheme.best_modality(region, modalities)
        channel = list(modalities).index(modality)
        panels = [Panel(modality.upper(), shown(images[channel]), grey_window(images[channel], brain))]
        if truth is not None:
            section = shown(truth[region])
            # An empty truth panel would read as "nothing there" while the region is elsewhere in the volume.
            heading = "truth" if section.any() or not truth[region].any() else "truth\n(not on this slice)"
            panels.append(Panel(heading, panels[0].image, panels[0].window, filled(section, colour)))
        for (method, _), masks in zip(segmentations, predicted, strict=True):
            if truth is None:
                panels.append(Panel(method, panels[0].image, panels[0].window, filled(shown(masks[region]), colour)))
            else:
                score = dice(masks[region], truth[region])
                fill = agreement(shown(truth[region]), shown(masks[region]), colour)
                panels.append(Panel(f"{method}\nDice {score:.2f}", panels[0].image, panels[0].window, fill))
        if uncertainty is not None:
            method, probabilities = uncertainty
            panels.append(Panel(f"{method}\nuncertainty", panels[0].image, panels[0].window,
                                heat(shown(region_uncertainty(probabilities, scheme, region)))))
        rows.append((region, panels))

    if truth is not None:
        legend = [(scheme.region_colours[r], f"{r} agreed") for r in regions]
        legend += [(MISSED_COLOUR, "missed (truth not predicted)"), (EXTRA_COLOUR, "extra (predicted, not truth)")]
    else:
        legend = [(scheme.region_colours[r], f"{r} predicted") for r in regions]
    if uncertainty is not None:
        legend.append((to_hex(colormaps[UNCERTAINTY_COLOURMAP](0.95)), "uncertain (last column)"))
    size = (float((crop[0].stop - crop[0].start) * spacing[0]), float((crop[1].stop - crop[1].start) * spacing[1]))
    return OverlayLayout(rows, z, world_z(affine, crop, z), crop, size, truth is not None, bool(unions[largest].any()),
                         legend, uncertainty is not None)


# --------------------------------------------------------------------------------------------------------------
# Drawing


def _orientation_markers(ax: Axes) -> None:
    """"R" and "L" on the left and right edges: the patient's right is on the viewer's left."""
    outline = [patheffects.withStroke(linewidth=2.0, foreground="black")]
    for x, text, align in ((0.03, "R", "left"), (0.97, "L", "right")):
        ax.text(x, 0.5, text, transform=ax.transAxes, ha=align, va="center", color="white", fontsize=9,
                fontweight="bold", path_effects=outline)


def _legend_inches(legend: Sequence[tuple[str, str]]) -> float:
    """About how wide a one-line legend of 9 pt entries is."""
    return sum(LEGEND_ENTRY_INCHES + LEGEND_CHAR_INCHES * len(text) for _, text in legend)


def _split_legend(legend: Sequence[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    """The legend on two lines: the regions' colours, then missed, extra and uncertain."""
    errors = {MISSED_COLOUR, EXTRA_COLOUR, to_hex(colormaps[UNCERTAINTY_COLOURMAP](0.95))}
    lines = [[e for e in legend if e[0] not in errors], [e for e in legend if e[0] in errors]]
    return [line for line in lines if line]


def _subtitle_lines(sentences: Sequence[str], width: int) -> list[str]:
    """``sentences`` on lines of at most ``width`` characters, a line breaking between sentences where it can."""
    lines: list[str] = []
    for sentence in sentences:
        if lines and len(lines[-1]) + 1 + len(sentence) <= width:
            lines[-1] += " " + sentence
        else:
            lines += textwrap.wrap(sentence, width=width)
    return lines


def draw_overlay(layout: OverlayLayout, title: str, subtitle: Sequence[str], path: PathLike) -> None:
    """Draw ``layout`` under ``title`` and the sentences of ``subtitle``, and write it atomically as PNG."""
    n_rows, n_columns = len(layout.rows), len(layout.rows[0][1])
    width_mm, height_mm = layout.size_mm
    panel_height = PANEL_INCHES * min(max(height_mm / width_mm, 0.5), 2.0)
    # Inches for the row labels (bold 13 pt), the panels' two-line titles, and the legend.
    left = 0.3 + 0.13 * max(len(label) for label, _ in layout.rows)
    width = left + PANEL_INCHES * n_columns
    # A narrow figure (one or two methods) wraps the subtitle rather than cutting it off.
    lines = _subtitle_lines(subtitle, int(width * SUBTITLE_CHARS_PER_INCH))
    top = 0.55 + 0.2 * len(lines) + PANEL_TITLE_INCHES
    # One legend line if it fits, else the regions' colours above the errors' (one legend each).
    entries = [layout.legend] if _legend_inches(layout.legend) <= width - 0.3 else _split_legend(layout.legend)
    bottom = 0.2 + 0.25 * len(entries)
    height = top + bottom + panel_height * n_rows + PANEL_TITLE_INCHES * (n_rows - 1)
    figure = _new_figure(width, height)
    axes = figure.subplots(n_rows, n_columns, squeeze=False)
    extent = (0.0, width_mm, 0.0, height_mm)  # mm, so the pixel aspect follows the spacing
    for row, (label, panels) in enumerate(layout.rows):
        for column, panel in enumerate(panels):
            ax = axes[row, column]
            low, high = panel.window
            ax.imshow(panel.image, cmap="gray", vmin=low, vmax=high, origin="upper", extent=extent,
                      interpolation="nearest")
            if panel.fill is not None:
                ax.imshow(panel.fill, origin="upper", extent=extent, interpolation="nearest")
            ax.set_title(panel.title, fontsize=9.5, linespacing=1.15)
            ax.set_xticks([])
            ax.set_yticks([])
            _orientation_markers(ax)
        axes[row, 0].set_ylabel(label, fontsize=13, fontweight="bold", rotation=0, ha="right", va="center",
                                labelpad=8)

    figure.suptitle(title, fontsize=13, fontweight="bold", y=1 - 0.12 / height, va="top")
    figure.text(0.5, 1 - 0.5 / height, "\n".join(lines), ha="center", va="top", fontsize=9.5, color="#333333",
                linespacing=1.3)
    for line, legend in enumerate(reversed(entries)):
        handles = [Patch(facecolor=colour, edgecolor="black", linewidth=0.5, label=text) for colour, text in legend]
        figure.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=9,
                      bbox_to_anchor=(0.5, (0.05 + 0.25 * line) / height), handlelength=1.2, columnspacing=1.2,
                      borderpad=0.2)
    figure.subplots_adjust(left=left / width, right=1 - 0.08 / width, top=1 - top / height, bottom=bottom / height,
                           wspace=0.04, hspace=PANEL_TITLE_INCHES / panel_height)
    _save_png(figure, path, dpi=DPI)


def overlay_headings(subject: str, methods: Sequence[str], layout: OverlayLayout) -> tuple[str, list[str]]:
    """The figure's title (``<subject> — <family>``, saying when there is no truth) and the sentences of its
    subtitle: where the slice is, what the Dice is of, which way round the images are."""
    title = f"{subject} — {family_name(methods)}" + ("" if layout.has_truth else " (no truth: predictions only)")
    where = "the largest section of the lesion" if layout.through_lesion else "the brain's middle (no lesion)"
    subtitle = [f"Axial slice at z = {layout.z_mm:+.1f} mm, {where}."]
    if layout.has_truth:
        subtitle.append("Dice: the region over the whole volume.")
    if layout.has_uncertainty:
        subtitle.append("Uncertainty: entropy of the region's probability, transparent where certain, yellow at "
                        "50%.")
    subtitle.append("Radiological view: the patient's right (R) on the left, anterior up.")
    return title, subtitle


def overlay_figure(
    subject: str,
    images: np.ndarray,
    modalities: Sequence[str],
    truth_raw: np.ndarray | None,
    segmentations: Sequence[tuple[str, np.ndarray]],
    scheme: LabelScheme,
    affine: np.ndarray,
    path: PathLike,
    uncertainty: tuple[str, np.ndarray] | None = None,
) -> OverlayLayout:
    """The figure of one subject and one method family (arrays as in :func:`overlay_layout`), written
    atomically as PNG; returns its layout."""
    layout = overlay_layout(images, modalities, truth_raw, segmentations, scheme, affine, uncertainty)
    draw_overlay(layout, *overlay_headings(subject, [name for name, _ in segmentations], layout), path)
    return layout


def overlay_subject(subject: str, methods: Sequence[str], image_paths: Sequence[PathLike], modalities: Sequence[str],
                    truth_path: PathLike | None, segmentation_paths: Sequence[PathLike], scheme: LabelScheme,
                    output: PathLike, probabilities_path: PathLike | None = None) -> None:
    """The overlay figure of one subject and one method family, from its files: the images (in the order of
    ``modalities``), the truth (None for an unlabelled subject), each method's segmentation (in the order of
    ``methods``, the panels' order) and the probabilities of the first (the network) for its uncertainty, all on
    one grid.

    Shown on the images' canonical (RAS+) grid, an exact transpose and flip, so that every subject's axial
    slices are the same way up whatever the files' storage order.
    """
    if len(methods) != len(segmentation_paths):
        raise ValueError(f"{len(methods)} methods {list(methods)} but {len(segmentation_paths)} segmentations")
    channels = read_channels(list(image_paths))
    canonical = canonical_grid(channels.data.shape, channels.affine)

    def label_map(path: PathLike) -> np.ndarray:
        return to_preprocessing_grid(read_image(path, dtype=None).data, canonical, order=0)

    images = np.moveaxis(to_preprocessing_grid(channels.data, canonical, order=0), -1, 0)
    truth = None if truth_path is None else label_map(truth_path)
    segmentations = [(method, label_map(path)) for method, path in zip(methods, segmentation_paths, strict=True)]
    uncertainty = None
    if probabilities_path is not None:
        probabilities = to_preprocessing_grid(read_image(probabilities_path).data, canonical, order=0)
        uncertainty = (methods[0], np.moveaxis(probabilities, -1, 0))
    overlay_figure(subject, images, modalities, truth, segmentations, scheme, canonical.affine, output, uncertainty)
