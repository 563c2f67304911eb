"""Intensity normalisation inside the brain mask, per channel.

``zscore`` (DeepMedic: zero mean, unit variance over the brain) and
``percentile-zscore`` (Havaei: clip at the 1st/99th percentile of the brain's
intensities, then z-score). Voxels outside the mask are set to 0.
"""

from __future__ import annotations

import numpy as np


def normalise_channel(
    image: np.ndarray, mask: np.ndarray, method: str = "zscore", percentiles: tuple[float, float] = (1.0, 99.0)
) -> np.ndarray:
    """One channel ``(x, y, z)`` normalised inside ``mask`` (bool); float32, 0 outside."""
    values = image[mask].astype(np.float64)
    if values.size == 0:
        raise ValueError("cannot normalise inside an empty brain mask")
    if method == "percentile-zscore":
        low, high = np.percentile(values, percentiles)
        image = np.clip(image, low, high)
        values = np.clip(values, low, high)
    elif method != "zscore":
        raise ValueError(f"unknown normalisation {method!r}; use zscore or percentile-zscore")
    std = values.std()
    if std == 0:
        raise ValueError("the image is constant inside the brain mask; it cannot be normalised")
    return np.where(mask, (image - values.mean()) / std, 0.0).astype(np.float32)


def normalise(
    images: np.ndarray, mask: np.ndarray, method: str = "zscore", percentiles: tuple[float, float] = (1.0, 99.0)
) -> np.ndarray:
    """Every channel of ``images`` ``(x, y, z, c)`` normalised inside ``mask``."""
    return np.stack(
        [normalise_channel(images[..., c], mask, method, percentiles) for c in range(images.shape[-1])], axis=-1
    )
