"""Evaluation of segmentations against the truth."""

from lesionseg.evaluation.metrics import (
    EMPTY_CASE_DISTANCE_MM,
    METRICS,
    binary_metrics,
    dice,
    region_dice,
    region_metrics,
    segmentation_volumes,
)

__all__ = [
    "EMPTY_CASE_DISTANCE_MM",
    "METRICS",
    "binary_metrics",
    "dice",
    "region_dice",
    "region_metrics",
    "segmentation_volumes",
]
