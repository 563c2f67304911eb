"""Small operations on boolean masks shared by the stages."""

from __future__ import annotations

import numpy as np


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...] | None:
    """Slices of the smallest box holding ``mask``, grown by ``margin`` voxels and clipped to the grid.

    None when the mask is empty.
    """
    box = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=others) if others else mask)
        if hits.size == 0:
            return None
        box.append(slice(max(int(hits[0]) - margin, 0), min(int(hits[-1]) + 1 + margin, mask.shape[axis])))
    return tuple(box)


def mask_volume_ml(mask: np.ndarray, affine: np.ndarray) -> float:
    """Volume of a mask in millilitres, from the voxel size of ``affine``."""
    return float(np.count_nonzero(mask) * abs(np.linalg.det(affine[:3, :3])) / 1000.0)


# Brain where a given brain mask exceeds this (masks come as 0/1, 0/255, about 1.0 or resampled floats).
GIVEN_MASK_THRESHOLD = 0.5
# A value is the background when it fills at least this fraction of the volume's border.
BACKGROUND_BORDER_FRACTION = 0.9


def border_background(image: np.ndarray) -> float | None:
    """The value filling the border (the six faces) of a 3D ``image``, or None when no value does.

    Brain-only data has a constant background: 0, or a negative constant once
    z-scored inside the brain (DeepMedic's example data), or any shift of it.
    """
    faces = [image[0], image[-1], image[:, 0], image[:, -1], image[:, :, 0], image[:, :, -1]]
    border = np.concatenate([f.ravel() for f in faces])
    values, counts = np.unique(border, return_counts=True)
    most = counts.argmax()
    return float(values[most]) if counts[most] >= BACKGROUND_BORDER_FRACTION * border.size else None


def differs_from_background(images: np.ndarray) -> np.ndarray:
    """Voxels where any channel of ``images`` ``(c, x, y, z)`` differs from its border background (else from 0)."""
    inside = np.zeros(images.shape[1:], dtype=bool)
    for channel in images:
        background = border_background(channel)
        inside |= channel != (0.0 if background is None else background)
    return inside
