"""Evaluation of segmentations against the truth."""

from lesionseg.evaluation.lesionwise import (
    LESIONWISE_METRICS,
    LesionwiseResult,
    TruthLesion,
    lesionwise_metrics,
    lesionwise_scores,
    region_lesionwise,
)
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
    "LESIONWISE_METRICS",
    "METRICS",
    "LesionwiseResult",
    "TruthLesion",
    "binary_metrics",
    "dice",
    "lesionwise_metrics",
    "lesionwise_scores",
    "region_dice",
    "region_lesionwise",
    "region_metrics",
    "segmentation_volumes",
]
