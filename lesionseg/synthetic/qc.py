"""Quality-control picture of a synthetic subject: every modality and the label map."""

from __future__ import annotations

import os

import numpy as np

from lesionseg.io import atomic_path
from lesionseg.labels import LabelScheme
from lesionseg.synthetic.subject import LABEL_NAMES, SyntheticSubject

LABEL_ALPHA = 0.55
# Head shown around the brain mask (mm), enough for skull and scalp.
CROP_MARGIN_MM = 25.0
N_SLICES = 3


def _lesion_slices(label: np.ndarray, brain_mask: np.ndarray) -> list[int]:
    """``N_SLICES`` axial indices through the lesion (its 20th/50th/80th z percentiles).

    Falls back to the brain when there is no lesion; neighbouring slices when the
    lesion is too thin for distinct percentiles.
    """
    z = np.nonzero(label)[2] if label.any() else np.nonzero(brain_mask)[2]
    slices = sorted({int(round(v)) for v in np.percentile(z, np.linspace(20, 80, N_SLICES))})
    if len(slices) < N_SLICES:
        middle = int(round(np.median(z)))
        slices = [middle + k - N_SLICES // 2 for k in range(N_SLICES)]
    return [int(np.clip(s, 0, label.shape[2] - 1)) for s in slices]


def _head_crop(brain_mask: np.ndarray, spacing_mm: float) -> tuple[slice, slice]:
    """In-plane (x, y) slices around the brain mask plus :data:`CROP_MARGIN_MM`."""
    margin = int(np.ceil(CROP_MARGIN_MM / spacing_mm))
    inside = np.argwhere(brain_mask)
    low = np.maximum(inside.min(axis=0) - margin, 0)
    high = np.minimum(inside.max(axis=0) + margin + 1, brain_mask.shape)
    return slice(int(low[0]), int(high[0])), slice(int(low[1]), int(high[1]))


def save_qc_png(subject: SyntheticSubject, path: str | os.PathLike, scheme: LabelScheme, title: str = "") -> None:
    """Write a PNG: one row per modality plus a label-overlay row, 3 axial slices through the lesion.

    Images are grey (0 to 1.15 x the brain's 99.5th percentile); the label row overlays
    the label map on the first modality in the colours of ``scheme``'s classes, with a legend. Slices
    are shown in neurological orientation (patient's right on the right,
    anterior up). Written atomically through a temporary file in the same folder.
    """
    # matplotlib here, not on import: lesionseg.synthetic's other users (the head template) draw nothing
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    spacing_mm = float(np.linalg.norm(subject.affine[:3, 0]))
    slices = _lesion_slices(subject.label, subject.brain_mask)
    crop_x, crop_y = _head_crop(subject.brain_mask, spacing_mm)
    in_brain = subject.brain_mask.astype(bool)
    modalities = list(subject.images)
    rows = [*modalities, "label"]
    panel_inches = 2.4
    aspect = (crop_y.stop - crop_y.start) / (crop_x.stop - crop_x.start)
    figure = Figure(figsize=(panel_inches * N_SLICES, panel_inches * aspect * len(rows) + 0.9))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(rows), N_SLICES, squeeze=False)
    colour_of_value = {v: c.colour for c in scheme.classes for v in c.raw_values}
    label_colours = [colour_of_value.get(v, "#000000") for v in range(max(colour_of_value) + 1)]
    label_cmap = ListedColormap(label_colours)
    background = subject.images[modalities[0]]

    def grey(ax, image: np.ndarray, z: int) -> None:
        vmax = 1.15 * float(np.percentile(image[in_brain], 99.5))  # headroom: WM not saturated
        ax.imshow(image[crop_x, crop_y, z].T, origin="lower", cmap="gray", vmin=0.0, vmax=vmax,
                  interpolation="nearest")

    for row, name in enumerate(rows):
        for column, z in enumerate(slices):
            ax = axes[row, column]
            ax.set_xticks([])
            ax.set_yticks([])
            if name == "label":
                grey(ax, background, z)
                overlay = np.ma.masked_equal(subject.label[crop_x, crop_y, z].T, 0)
                ax.imshow(overlay, origin="lower", cmap=label_cmap, vmin=-0.5, vmax=len(label_colours) - 0.5,
                          alpha=LABEL_ALPHA, interpolation="nearest")
            else:
                grey(ax, subject.images[name], z)
            if column == 0:
                ax.set_ylabel(name)
            if row == 0:
                world_z = float((subject.affine @ [0.0, 0.0, z, 1.0])[2])
                ax.set_title(f"z = {world_z:.0f} mm", fontsize=9)
    legend = [Patch(color=label_colours[value], label=f"{value} {name}")
              for value, name in LABEL_NAMES[subject.kind].items()]
    figure.legend(handles=legend, loc="lower center", ncol=len(legend), fontsize=8, frameon=False)
    figure.suptitle(title or f"synthetic {subject.kind}", fontsize=10)
    figure.tight_layout(rect=(0.0, 0.04, 1.0, 0.97))
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
