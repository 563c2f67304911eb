"""N4 bias-field correction (Tustison et al. 2010) inside the brain mask (ANTsPy)."""

from __future__ import annotations

import logging

import numpy as np

from lesionseg.preprocessing.ants_bridge import from_ants, to_ants

log = logging.getLogger(__name__)


def n4_correct(
    image: np.ndarray,
    affine: np.ndarray,
    mask: np.ndarray,
    shrink_factor: int = 4,
    iterations: tuple[int, ...] = (50, 50, 50, 50),
    spline_distance_mm: float = 200.0,
) -> np.ndarray:
    """``image`` (x, y, z) divided by the N4 bias field estimated inside ``mask``; float32.

    N4 models the image as positive: an image with values <= 0 in the brain is
    shifted up for the estimate and shifted back afterwards.
    """
    import ants

    inside = image[mask]
    shift = float(1.0 - inside.min()) if inside.size and inside.min() <= 0 else 0.0
    corrected = ants.n4_bias_field_correction(
        to_ants(image + shift, affine),
        mask=to_ants(mask.astype(np.float32), affine),
        shrink_factor=int(shrink_factor),
        convergence={"iters": list(iterations), "tol": 1e-7},
        spline_param=float(spline_distance_mm),
    )
    result = from_ants(corrected).data - shift
    # Outside the mask the field is extrapolated; keep the original values there.
    return np.where(mask, result, image).astype(np.float32)
