"""The evaluation rule's work: score every test subject's segmentation of one method against its truth.

Scoring happens on the subject's original grid, against the truth as the user
gave it (never the resampled one), with the spacing of the truth's header.
Every scored row holds the legacy metrics (:data:`~lesionseg.evaluation.metrics.METRICS`) and the lesion-wise
and detection metrics (:data:`~lesionseg.evaluation.lesionwise.LESIONWISE_METRICS`, with the scheme's
``lesionwise`` settings). Subjects without truth get their predicted volumes only, every other column NaN.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from lesionseg.evaluation.lesionwise import LESIONWISE_METRICS, region_lesionwise
from lesionseg.evaluation.metrics import METRICS, region_metrics, segmentation_volumes
from lesionseg.io import atomic_path, read_image
from lesionseg.labels import LabelScheme

log = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = ("subject", "region", *METRICS, *LESIONWISE_METRICS)
"""Columns of the per-subject table, in order."""

PathLike = str | os.PathLike


def evaluate_subject(subject: str, segmentation_path: PathLike, truth_path: PathLike | None,
                     scheme: LabelScheme) -> list[dict[str, object]]:
    """One row per region: every metric (legacy and lesion-wise), or only the predicted volume when there is no
    truth."""
    segmentation = read_image(segmentation_path, dtype=None)
    if truth_path is None:
        volumes = segmentation_volumes(segmentation.data, scheme, segmentation.spacing)
        return [{"subject": subject, "region": region, **dict.fromkeys(METRICS, np.nan),
                 **dict.fromkeys(LESIONWISE_METRICS, np.nan), "volume_prediction_mm3": volume}
                for region, volume in volumes.items()]
    truth = read_image(truth_path, dtype=None)
    if truth.data.shape != segmentation.data.shape:
        raise ValueError(f"subject {subject}: segmentation {segmentation_path} has shape {segmentation.data.shape} "
                         f"but its truth {truth_path} has {truth.data.shape}; re-run the export of this subject")
    scores = region_metrics(segmentation.data, truth.data, scheme, truth.spacing)
    lesionwise = region_lesionwise(segmentation.data, truth.data, scheme, truth.spacing)
    return [{"subject": subject, "region": region, **values, **lesionwise[region]} for region, values in scores.items()]


def evaluate_method(subjects: Sequence[str], segmentation_paths: Sequence[PathLike],
                    truth_paths: Sequence[PathLike | None], scheme: LabelScheme, output: PathLike) -> pd.DataFrame:
    """Per-subject table of one method (one row per subject and region), written as CSV."""
    rows = []
    for subject, segmentation, truth in zip(subjects, segmentation_paths, truth_paths, strict=True):
        rows += evaluate_subject(subject, segmentation, truth, scheme)
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    scored = table.dropna(subset=["dice"])
    if not scored.empty:
        log.info("mean Dice per region: %s", scored.groupby("region", sort=False)["dice"].mean().round(4).to_dict())
    with atomic_path(output) as tmp:
        table.to_csv(tmp, index=False)
    return table
