"""Overlap of a segmentation with the truth, per evaluation region."""

from __future__ import annotations

import numpy as np

from lesionseg.labels import LabelScheme


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks; 1 when both are empty (BraTS convention)."""
    total = int(prediction.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(prediction, truth).sum()) / total


def region_dice(prediction_raw: np.ndarray, truth_raw: np.ndarray, scheme: LabelScheme) -> dict[str, float]:
    """Dice of every evaluation region of ``scheme`` (raw label maps)."""
    return {
        region: dice(scheme.region_mask(prediction_raw, region), scheme.region_mask(truth_raw, region))
        for region in scheme.regions
    }
