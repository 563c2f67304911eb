"""The preprocessing grid: isotropic, cropped to the brain, and the way back.

The preprocessing grid keeps the original voxel axes (same direction cosines),
with an isotropic spacing, over the brain's bounding box plus a margin. Along
each axis a preprocessing voxel ``i`` sits at original voxel coordinate
``start + i * step`` (``step`` = new spacing / original spacing). When the spacing
does not change (BraTS at 1 mm), ``step`` is 1 and ``start`` an integer, so going
there and back is an exact crop and un-crop: no value is interpolated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from lesionseg.io import atomic_path

# Spacings this close (relative) count as unchanged, so resampling is a crop.
SAME_SPACING_RTOL = 1e-4


@dataclass(frozen=True)
class GridGeometry:
    """How the preprocessing grid sits in the subject's original grid."""

    original_shape: tuple[int, int, int]
    original_affine: np.ndarray
    start: np.ndarray  # original voxel coordinate of preprocessing voxel 0, per axis
    step: np.ndarray  # original voxels per preprocessing voxel, per axis
    shape: tuple[int, int, int]

    @property
    def affine(self) -> np.ndarray:
        """Voxel -> world affine of the preprocessing grid."""
        to_original = np.diag([*self.step, 1.0])
        to_original[:3, 3] = self.start
        return self.original_affine @ to_original

    @property
    def spacing(self) -> np.ndarray:
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    def to_json(self, path: str | Path) -> None:
        payload = {
            "original_shape": list(self.original_shape),
            "original_affine": self.original_affine.tolist(),
            "start": self.start.tolist(),
            "step": self.step.tolist(),
            "shape": list(self.shape),
            "affine": self.affine.tolist(),
        }
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(payload, indent=2))

    @classmethod
    def from_json(cls, path: str | Path) -> GridGeometry:
        payload = json.loads(Path(path).read_text())
        return cls(
            tuple(payload["original_shape"]), np.asarray(payload["original_affine"], dtype=float),
            np.asarray(payload["start"], dtype=float), np.asarray(payload["step"], dtype=float),
            tuple(payload["shape"]),
        )


def preprocessing_grid(
    brain_mask: np.ndarray, original_affine: np.ndarray, spacing_mm: float, margin_mm: float
) -> GridGeometry:
    """The grid of ``spacing_mm`` covering the mask's bounding box plus ``margin_mm`` on each side."""
    original_spacing = np.linalg.norm(original_affine[:3, :3], axis=0)
    step = spacing_mm / original_spacing
    same = np.isclose(step, 1.0, rtol=SAME_SPACING_RTOL, atol=0)
    step = np.where(same, 1.0, step)
    voxels = np.argwhere(brain_mask)
    if voxels.size == 0:
        raise ValueError("cannot crop to an empty brain mask")
    margin_vox = margin_mm / original_spacing
    low = voxels.min(axis=0) - margin_vox
    high = voxels.max(axis=0) + margin_vox
    # Unchanged spacing: start on a voxel so resampling is a pure crop.
    start = np.where(same, np.floor(low), low)
    shape = tuple(int(n) for n in np.floor((high - start) / step) + 1)
    return GridGeometry(tuple(brain_mask.shape), np.asarray(original_affine, dtype=float), start, step, shape)


def _resample(data: np.ndarray, start: np.ndarray, step: np.ndarray, shape, order: int, cval: float) -> np.ndarray:
    """Sample a 3D array at voxel coordinates ``start + step * i`` for ``i`` over ``shape``."""
    if np.all(step == 1.0) and np.all(start == np.round(start)):
        return _shifted_copy(data, start.astype(int), shape, cval)
    return ndi.affine_transform(
        data, np.diag(step), offset=start, output_shape=shape, order=order, mode="constant", cval=cval,
        output=np.float32 if order > 0 else data.dtype, prefilter=order > 1,
    )


def _shifted_copy(data: np.ndarray, start: np.ndarray, shape, cval: float) -> np.ndarray:
    """``out[i] = data[start + i]`` where defined, ``cval`` elsewhere: an exact crop or pad."""
    out = np.full(shape, cval, dtype=data.dtype)
    source, target = [], []
    for s, n_in, n_out in zip(start, data.shape, shape, strict=True):
        lo, hi = max(s, 0), min(s + n_out, n_in)
        source.append(slice(lo, max(hi, lo)))
        target.append(slice(lo - s, lo - s + max(hi - lo, 0)))
    out[tuple(target)] = data[tuple(source)]
    return out


def _antialias(data: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Gaussian prefilter for downsampling by ``step`` (variance of a box of the new voxel size)."""
    sigma = np.sqrt(np.clip(step**2 - 1.0, 0.0, None) / 12.0)
    return ndi.gaussian_filter(data, sigma) if np.any(sigma > 0) else data


def to_preprocessing_grid(data: np.ndarray, geometry: GridGeometry, order: int = 1) -> np.ndarray:
    """Resample an original-grid array ``(x, y, z[, c])`` onto the preprocessing grid.

    ``order`` 1 (linear, with anti-aliasing when downsampling) for images, 0 for
    masks and label maps.
    """
    def one(volume: np.ndarray) -> np.ndarray:
        source = _antialias(volume.astype(np.float32), geometry.step) if order > 0 else volume
        return _resample(source, geometry.start, geometry.step, geometry.shape, order, 0.0)

    if data.ndim == 4:
        return np.stack([one(data[..., c]) for c in range(data.shape[-1])], axis=-1)
    return one(data)


def to_original_grid(data: np.ndarray, geometry: GridGeometry, order: int = 1, cval: float = 0.0) -> np.ndarray:
    """Put a preprocessing-grid array ``(x, y, z[, c])`` back on the subject's original grid.

    ``order`` 1 for probabilities (``cval`` fills outside the crop; use 1 for a
    background channel), 0 for label maps. The inverse of
    :func:`to_preprocessing_grid` exactly when the spacing was unchanged.
    """
    inverse_step = 1.0 / geometry.step
    inverse_start = -geometry.start * inverse_step

    def one(volume: np.ndarray, fill: float) -> np.ndarray:
        return _resample(volume, inverse_start, inverse_step, geometry.original_shape, order, fill)

    if data.ndim == 4:
        fills = np.broadcast_to(np.asarray(cval, dtype=float), (data.shape[-1],))
        return np.stack([one(data[..., c], fills[c]) for c in range(data.shape[-1])], axis=-1)
    return one(data, float(cval))
