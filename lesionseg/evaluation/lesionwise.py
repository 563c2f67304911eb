"""Lesion-wise metrics (BraTS 2023+ challenge) and lesion detection metrics, per evaluation region.

Every function compares a boolean prediction mask with a boolean truth mask on
the same grid, with a voxel spacing in mm per axis, under the parameters of a
:class:`~lesionseg.labels.LesionwiseSettings` (the scheme's ``lesionwise``).
The definitions are those of the BraTS 2023 challenge's lesion-wise evaluation
(``get_LesionWiseScores`` / ``get_LesionWiseResults`` of its metrics code),
with our pooled HD95:

- Components: the ``connectivity``-connected components (26 by default, 6 and
  18 allowed; 4 and 8 in 2D) of the prediction are the *predicted lesions*.
- Merging: the truth is dilated ``dilation_iterations`` times with the
  18-connected structuring element (``generate_binary_structure(3, 2)``; none
  when 0), and each component of the dilated truth (same connectivity) is one
  *truth lesion*: the truth voxels inside it. Truth components whose dilations
  touch are one lesion; with no dilation the lesions are the truth's components.
  The component of the dilated truth is also the lesion's own dilation.
- Matching: the predicted lesions that overlap a truth lesion's dilation are its
  matches; a predicted lesion may match several truth lesions.
- Scoring: a truth lesion of more than ``min_truth_voxels`` voxels is *scored*;
  smaller ones are left out of every sum and count below (the official code
  drops lesions of volume ``<=`` the threshold), but the predicted lesions they
  match are matched all the same. A scored lesion's Dice and HD95 compare it
  with the union of its matches (HD95 as :mod:`lesionseg.evaluation.metrics`:
  the 95th percentile of the pooled surface distances, as medpy and panoptica);
  an unmatched scored lesion has Dice 0 and HD95 ``false_positive_hd95_mm``.
- False positives: the predicted lesions that match no truth lesion (of any
  size); each scores Dice 0 and HD95 ``false_positive_hd95_mm``.
- Per case (region), with ``n`` scored truth lesions and ``f`` false positives:
  lesion-wise Dice ``sum(lesion Dice) / (n + f)`` and lesion-wise HD95
  ``(sum(lesion HD95) + f * false_positive_hd95_mm) / (n + f)``; when
  ``n + f = 0``, Dice 1 and HD95 0.

The detection metrics of the same matching (ISLES 2022 style):

- ``truth_lesions`` ``n``; ``predicted_lesions`` (all components of the
  prediction); ``detected_lesions`` ``d``, the scored truth lesions with at
  least one match; ``missed_lesions`` ``m = n - d``;
  ``false_positive_lesions`` ``f``;
- ``lesion_f1`` ``2 d / (2 d + f + m)``, 1 when the denominator is 0;
- ``absolute_volume_difference_mm3``: ``|predicted volume - truth volume|`` of
  the whole region in mm^3 (every voxel, whatever the lesions' sizes).

Where the BraTS code's HD95 differs: it uses DeepMind's ``surface_distance``
(surface elements weighted by area, the larger of the two directed 95th
percentiles) and gives an unmatched lesion ``inf``, then 374; ours is the pooled
voxel HD95 and ``false_positive_hd95_mm`` (374 by default). Its volume
threshold is in mm^3 (its data are 1 mm isotropic); ours counts voxels.

Work is done in the bounding box of both masks (grown by the dilation) and, per
lesion, in the box of the lesion and its matches (``scipy.ndimage.find_objects``),
never in whole-volume passes per lesion.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lesionseg.evaluation.metrics import _check_pair, _check_spacing, binary_metrics
from lesionseg.labels import LabelScheme, LesionwiseSettings
from lesionseg.masks import bounding_box

LESIONWISE_METRICS: tuple[str, ...] = (
    "lesionwise_dice",
    "lesionwise_hd95",
    "truth_lesions",
    "predicted_lesions",
    "detected_lesions",
    "missed_lesions",
    "false_positive_lesions",
    "lesion_f1",
    "absolute_volume_difference_mm3",
)
"""Names of the values :func:`lesionwise_metrics` returns, in column order."""


@dataclass(frozen=True)
class TruthLesion:
    """One (merged) truth lesion: its size, whether it is scored, its matches and, when scored, its scores."""

    voxels: int
    scored: bool
    matches: tuple[int, ...]
    """Labels (1-based, in the prediction's component labelling) of the predicted lesions it matches."""
    dice: float
    """Dice with the union of its matches; NaN when not scored."""
    hd95: float
    """HD95 in mm to the union of its matches (``false_positive_hd95_mm`` when unmatched); NaN when not scored."""

    @property
    def detected(self) -> bool:
        return bool(self.matches)


@dataclass(frozen=True)
class LesionwiseResult:
    """Everything the lesion-wise evaluation of one region finds (definitions in the module docstring)."""

    lesions: tuple[TruthLesion, ...]
    """Every truth lesion after merging, scored or not, in the order of the dilated truth's labelling."""
    predicted_lesions: int
    false_positives: tuple[int, ...]
    """Labels of the predicted lesions that match no truth lesion."""
    volume_truth_mm3: float
    volume_prediction_mm3: float
    false_positive_hd95_mm: float

    @property
    def scored(self) -> tuple[TruthLesion, ...]:
        return tuple(lesion for lesion in self.lesions if lesion.scored)

    def scores(self) -> dict[str, float]:
        """The values of :data:`LESIONWISE_METRICS`, in that order, as floats."""
        scored = self.scored
        n_fp = len(self.false_positives)
        denominator = len(scored) + n_fp
        if denominator == 0:
            lesionwise_dice, lesionwise_hd95 = 1.0, 0.0
        else:
            lesionwise_dice = math.fsum(lesion.dice for lesion in scored) / denominator
            lesionwise_hd95 = (math.fsum(lesion.hd95 for lesion in scored)
                               + n_fp * self.false_positive_hd95_mm) / denominator
        detected = sum(lesion.detected for lesion in scored)
        missed = len(scored) - detected
        f1_denominator = 2 * detected + n_fp + missed
        return {
            "lesionwise_dice": float(lesionwise_dice),
            "lesionwise_hd95": float(lesionwise_hd95),
            "truth_lesions": float(len(scored)),
            "predicted_lesions": float(self.predicted_lesions),
            "detected_lesions": float(detected),
            "missed_lesions": float(missed),
            "false_positive_lesions": float(n_fp),
            "lesion_f1": 1.0 if f1_denominator == 0 else 2.0 * detected / f1_denominator,
            "absolute_volume_difference_mm3": abs(self.volume_prediction_mm3 - self.volume_truth_mm3),
        }


def component_structure(ndim: int, connectivity: int) -> np.ndarray:
    """Structuring element of ``connectivity``-connected components: 6, 18 or 26 in 3D, 4 or 8 in 2D
    (the number of neighbours a voxel has)."""
    for rank in range(1, ndim + 1):
        structure = ndimage.generate_binary_structure(ndim, rank)
        if int(structure.sum()) - 1 == connectivity:
            return structure
    allowed = [int(ndimage.generate_binary_structure(ndim, r).sum()) - 1 for r in range(1, ndim + 1)]
    raise ValueError(f"connectivity {connectivity} is not one of {allowed} for {ndim}-dimensional masks")


def dilation_structure(ndim: int) -> np.ndarray:
    """Structuring element of the truth's dilation: 18-connected in 3D (BraTS), 8-connected in 2D."""
    return ndimage.generate_binary_structure(ndim, min(2, ndim))


def label_components(mask: np.ndarray, connectivity: int = 26) -> tuple[np.ndarray, int]:
    """Connected components of a boolean mask: labels (int32, 0 outside, 1..n) and their number n."""
    labels, n = ndimage.label(mask, structure=component_structure(mask.ndim, connectivity))
    return labels, int(n)


def merged_truth_lesions(truth: np.ndarray, dilation_iterations: int, connectivity: int = 26
                         ) -> tuple[np.ndarray, int]:
    """Labels of the dilated truth's components (the truth itself when ``dilation_iterations`` is 0) and their
    number: truth voxels with label k make the merged lesion k, and label k is that lesion's dilation.

    Dilated in place on the grid: grow ``truth`` by ``dilation_iterations`` voxels beforehand when the dilation
    must reach past its edge (the callers crop with that margin, clipped to the grid as scipy clips it).
    """
    if dilation_iterations < 0:
        raise ValueError(f"dilation_iterations must be 0 or more, not {dilation_iterations}")
    dilated = (ndimage.binary_dilation(truth, structure=dilation_structure(truth.ndim),
                                       iterations=dilation_iterations)
               if dilation_iterations else truth)
    return label_components(dilated, connectivity)


def _union_box(boxes: Sequence[tuple[slice, ...]]) -> tuple[slice, ...]:
    return tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(len(boxes[0])))


def lesionwise_metrics(prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float],
                       settings: LesionwiseSettings = LesionwiseSettings()) -> LesionwiseResult:
    """Lesion-wise evaluation of one pair of masks (module docstring): the truth lesions, their matches and
    scores, and the false positives; ``.scores()`` gives the values of :data:`LESIONWISE_METRICS`.

    ``prediction`` and ``truth`` are arrays of one shape (non-zero means inside); ``spacing`` is the voxel size
    in mm per axis. Raises ``ValueError`` on a shape mismatch, a bad spacing or a bad connectivity.
    """
    prediction = np.asarray(prediction)
    truth = np.asarray(truth)
    _check_pair(prediction, truth)
    spacing_mm = _check_spacing(spacing, prediction.ndim)
    component_structure(prediction.ndim, settings.connectivity)  # refuse a bad connectivity even when empty
    prediction = prediction.astype(bool, copy=False)
    truth = truth.astype(bool, copy=False)
    voxel_mm3 = math.prod(spacing_mm)
    fp_hd95 = float(settings.false_positive_hd95_mm)
    volumes = {"volume_truth_mm3": int(np.count_nonzero(truth)) * voxel_mm3,
               "volume_prediction_mm3": int(np.count_nonzero(prediction)) * voxel_mm3}

    box = bounding_box(prediction | truth, settings.dilation_iterations)
    if box is None:
        return LesionwiseResult((), 0, (), false_positive_hd95_mm=fp_hd95, **volumes)
    prediction, truth = prediction[box], truth[box]

    predicted, n_predicted = label_components(prediction, settings.connectivity)
    merged, _ = merged_truth_lesions(truth, settings.dilation_iterations, settings.connectivity)
    predicted_boxes = ndimage.find_objects(predicted)
    matched = np.zeros(n_predicted + 1, dtype=bool)
    lesions = []
    for label, lesion_box in enumerate(ndimage.find_objects(merged), start=1):
        if lesion_box is None:
            continue
        dilation = merged[lesion_box] == label
        voxels = int(np.count_nonzero(truth[lesion_box] & dilation))
        hits = np.unique(predicted[lesion_box][dilation])
        hits = hits[hits > 0]
        matched[hits] = True
        matches = tuple(int(h) for h in hits)
        if voxels <= settings.min_truth_voxels:
            lesions.append(TruthLesion(voxels, False, matches, math.nan, math.nan))
            continue
        if not matches:
            lesions.append(TruthLesion(voxels, True, (), 0.0, fp_hd95))
            continue
        pair_box = _union_box([lesion_box, *(predicted_boxes[h - 1] for h in matches)])
        lesion_mask = truth[pair_box] & (merged[pair_box] == label)
        matched_mask = np.isin(predicted[pair_box], hits)
        scores = binary_metrics(matched_mask, lesion_mask, spacing_mm, empty_distance_mm=fp_hd95)
        lesions.append(TruthLesion(voxels, True, matches, scores["dice"], scores["hd95"]))

    false_positives = tuple(int(p) for p in np.flatnonzero(~matched[1:]) + 1)
    return LesionwiseResult(tuple(lesions), n_predicted, false_positives, false_positive_hd95_mm=fp_hd95,
                            **volumes)


def lesionwise_scores(prediction: np.ndarray, truth: np.ndarray, spacing: Sequence[float],
                      settings: LesionwiseSettings = LesionwiseSettings()) -> dict[str, float]:
    """The values of :data:`LESIONWISE_METRICS` for one pair of masks."""
    return lesionwise_metrics(prediction, truth, spacing, settings).scores()


def region_lesionwise(prediction_raw: np.ndarray, truth_raw: np.ndarray, scheme: LabelScheme,
                      spacing: Sequence[float]) -> dict[str, dict[str, float]]:
    """:func:`lesionwise_scores` of every evaluation region of ``scheme`` (its ``lesionwise`` settings), from raw
    label maps: region -> values of :data:`LESIONWISE_METRICS`."""
    prediction_raw = np.asarray(prediction_raw)
    truth_raw = np.asarray(truth_raw)
    _check_pair(prediction_raw, truth_raw, "label maps")
    return {
        region: lesionwise_scores(scheme.region_mask(prediction_raw, region), scheme.region_mask(truth_raw, region),
                                  spacing, scheme.lesionwise)
        for region in scheme.regions
    }
