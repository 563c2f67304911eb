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
