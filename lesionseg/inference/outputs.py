"""Probability maps and segmentations on disk, and their way back to the subject's original grid.

Probability maps are one 4D NIfTI per subject, axes ``(x, y, z, class)``; in
memory they are ``(class, x, y, z)`` like the networks' outputs. Segmentations
hold the dataset's own raw label values.
"""

from __future__ import annotations

import os

import numpy as np

from lesionseg.io import Volume, read_image, write_nifti
from lesionseg.labels import LabelScheme
from lesionseg.preprocessing.geometry import GridGeometry, to_original_grid

PROBABILITY_DTYPES = ("float32", "uint8")


def write_probabilities(path: str | os.PathLike, probabilities: np.ndarray, affine: np.ndarray,
                        dtype: str = "float32") -> None:
    """Write ``(class, x, y, z)`` probabilities as a 4D NIfTI, atomically.

    ``uint8`` stores 256 levels between the map's minimum and maximum (nibabel
    writes the scale factor into the header, so viewers and :func:`read_probabilities`
    see probabilities again, within 1/510).
    """
    if dtype not in PROBABILITY_DTYPES:
        raise ValueError(f"probability maps are written as one of {PROBABILITY_DTYPES}, not {dtype!r}")
    data = np.moveaxis(np.asarray(probabilities, dtype=np.float32), 0, -1)
    write_nifti(path, data, affine, scaled_to=np.uint8 if dtype == "uint8" else None)


def read_probabilities(path: str | os.PathLike) -> Volume:
    """A probability map as a :class:`Volume` of ``(class, x, y, z)`` float32."""
    volume = read_image(path)
    if volume.data.ndim != 4:
        raise ValueError(f"{path}: a probability map is 4D (x, y, z, class), this image has shape {volume.data.shape}")
    return Volume(np.ascontiguousarray(np.moveaxis(volume.data, -1, 0)), volume.affine)


def probabilities_on_original_grid(probabilities: np.ndarray, geometry: GridGeometry) -> np.ndarray:
    """Preprocessing-grid probabilities ``(class, x, y, z)`` on the original grid (linear; background outside the crop)."""
    fills = np.zeros(probabilities.shape[0])
    fills[0] = 1.0
    original = to_original_grid(np.moveaxis(probabilities, 0, -1), geometry, order=1, cval=fills)
    return np.ascontiguousarray(np.moveaxis(original, -1, 0))


def remove_small_components(classes: np.ndarray, spacing: tuple[float, ...] | np.ndarray,
                            min_volume_mm3: float) -> tuple[np.ndarray, int]:
    """Set lesion components (any non-background class, 26-connected) below ``min_volume_mm3`` to background.

    Returns the cleaned class map and how many components were removed.
    """
    from scipy import ndimage as ndi  # on use: the network and CRF jobs only read and write probabilities

    if min_volume_mm3 <= 0:
        return classes, 0
    components, count = ndi.label(classes > 0, structure=np.ones((3,) * classes.ndim, dtype=bool))
    if count == 0:
        return classes, 0
    sizes_mm3 = np.bincount(components.ravel())[1:] * float(np.prod(spacing))
    small = np.flatnonzero(sizes_mm3 < min_volume_mm3) + 1
    cleaned = classes.copy()
    cleaned[np.isin(components, small)] = 0
    return cleaned, len(small)


def classes_from_probabilities(probabilities: np.ndarray, spacing: tuple[float, ...],
                               min_component_mm3: float = 0.0) -> tuple[np.ndarray, int]:
    """Class map ``(x, y, z)`` of the most probable classes of ``(class, x, y, z)`` probabilities, small components
    removed, and how many were."""
    return remove_small_components(probabilities.argmax(axis=0).astype(np.uint8), spacing, min_component_mm3)


def segmentation_from_probabilities(probabilities: np.ndarray, scheme: LabelScheme, spacing: tuple[float, ...],
                                    min_component_mm3: float = 0.0) -> tuple[np.ndarray, int]:
    """Raw label map (the dataset's values) of the most probable classes, small components removed."""
    classes, removed = classes_from_probabilities(probabilities, spacing, min_component_mm3)
    return scheme.to_raw(classes), removed
