"""QC picture of a preprocessed subject: each modality before and after, with the mask outline."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lesionseg.io import atomic_path
from lesionseg.preprocessing.geometry import GridGeometry, canonical_grid, to_preprocessing_grid

MASK_COLOUR = "#ff3030"


def _window(image: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    values = image[mask] if mask.any() else image.ravel()
    return float(np.percentile(values, 0.5)), float(np.percentile(values, 99.5))


def save_preprocessing_qc(
    path: str | os.PathLike,
    modalities: Sequence[str],
    raw: np.ndarray,
    raw_mask: np.ndarray,
    preprocessed: np.ndarray,
    mask: np.ndarray,
    geometry: GridGeometry,
    title: str = "",
) -> None:
    """One row per modality: raw axial and coronal slices through the brain's centre
    with the mask outline (red), then the same planes after preprocessing.

    ``raw`` (x, y, z, c) and ``raw_mask`` are on the original grid; ``preprocessed``
    and ``mask`` on the preprocessing grid described by ``geometry``. The raw
    images are shown in canonical (RAS+) axis order, like the preprocessed ones,
    whatever their storage order.
    """
    canonical = canonical_grid(raw_mask.shape, geometry.original_affine)
    raw = to_preprocessing_grid(raw, canonical, order=0)
    centre_original = np.round(np.argwhere(raw_mask).mean(axis=0))
    raw_mask = to_preprocessing_grid(raw_mask, canonical, order=0)
    centre = np.round(canonical.original_to_preprocessing(centre_original)).astype(int)
    # The same world position on the preprocessing grid.
    centre_pre = np.clip(np.round(geometry.original_to_preprocessing(centre_original)).astype(int), 0,
                         np.asarray(preprocessed.shape[:3]) - 1)
    aspect_raw = canonical.spacing

    def planes(volume: np.ndarray, at: np.ndarray) -> list[np.ndarray]:
        # Axial (x, y) and coronal (x, z) slices, displayed with anterior / superior up.
        return [volume[:, :, at[2]].T, volume[:, at[1], :].T]

    n = len(modalities)
    figure = Figure(figsize=(12, 2.8 * n + 0.6))
    FigureCanvasAgg(figure)
    axes = figure.subplots(n, 4, squeeze=False)
    headings = ["raw axial", "raw coronal", "preprocessed axial", "preprocessed coronal"]
    for row, modality in enumerate(modalities):
        low, high = _window(raw[..., row], raw_mask)
        low_pre, high_pre = _window(preprocessed[..., row], mask)
        panels = [
            (planes(raw[..., row], centre), planes(raw_mask, centre), (low, high), aspect_raw),
            (planes(preprocessed[..., row], centre_pre), planes(mask, centre_pre), (low_pre, high_pre),
             geometry.spacing),
        ]
        column = 0
        for images, masks, (vmin, vmax), spacing in panels:
            for plane, (image, outline) in enumerate(zip(images, masks, strict=True)):
                ax = axes[row, column]
                ratio = spacing[1] / spacing[0] if plane == 0 else spacing[2] / spacing[0]
                ax.imshow(image, cmap="gray", vmin=vmin, vmax=vmax, origin="lower", aspect=ratio,
                          interpolation="nearest")
                ax.contour(outline.astype(float), levels=[0.5], colors=MASK_COLOUR, linewidths=0.7)
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 0:
                    ax.set_title(headings[column], fontsize=10)
                if column == 0:
                    ax.set_ylabel(modality, fontsize=11)
                column += 1
    figure.suptitle(title, fontsize=12)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=80, format="png")
