"""Overlap of a segmentation with the truth, per evaluation region.

Kept for existing imports; the functions live in :mod:`lesionseg.evaluation.metrics`.
"""

from __future__ import annotations

from lesionseg.evaluation.metrics import dice, region_dice

__all__ = ["dice", "region_dice"]
