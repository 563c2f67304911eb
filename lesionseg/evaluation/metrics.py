"""Segmentation metrics per subject and evaluation region.

Every metric compares a boolean prediction mask with a boolean truth mask on the
same grid, with a voxel spacing in mm per axis (anisotropic allowed). The
definitions follow ``medpy.metric.binary`` (0.5.2), which the tests use as the
reference:

- Overlap from the voxel counts TP, FP, FN and TN (TN over the whole volume):
  Dice ``2 TP / (2 TP + FP + FN)``, sensitivity (recall) ``TP / (TP + FN)``,
  specificity ``TN / (TN + FP)``, precision (PPV) ``TP / (TP + FP)``.
- Surface voxels of a mask: the voxels of the mask with a face (6-connected in
  3D, 4-connected in 2D) neighbour outside the mask, the outside of the grid
  counting as outside the mask (medpy: ``mask ^ binary_erosion(mask, cross)``).
- Surface distances: the Euclidean distance in mm from every prediction surface
  voxel to the nearest truth surface voxel, and from every truth surface voxel
  to the nearest prediction surface voxel (``distance_transform_edt`` of the
  complement of a surface, with ``sampling=spacing``).
- HD95: the 95th percentile (``numpy.percentile``, linear interpolation) of the
  two directed distance sets *pooled* into one set. This is exactly medpy's
  ``hd95`` (``percentile(hstack((d_pred_to_truth, d_truth_to_pred)), 95)``); it
  is not the maximum of the two directed 95th percentiles used by some other
  toolkits, which is never smaller.
- ASSD: the mean of the pooled distances (medpy's ``assd``; surfaces with more
  voxels weigh more, it is not the mean of the two directed means).
- Hausdorff: the maximum of the pooled distances (medpy's ``hd``).
- Volumes in mm^3 (voxel count times the voxel volume) and the volume
  difference prediction - truth in mm^3.

Empty masks follow the BraTS convention, where medpy raises or returns 0:

- both empty: Dice, sensitivity, specificity and precision are 1 and HD95, ASSD
  and Hausdorff are 0 (perfect agreement);
- exactly one empty: Dice 0 and HD95, ASSD and Hausdorff
  :data:`EMPTY_CASE_DISTANCE_MM` (the diagonal of the 240 x 240 x 155 mm BraTS
  box), whatever the grid.

Generally, a ratio whose denominator is 0 (sensitivity with an empty truth,
precision with an empty prediction, specificity with a truth filling the
volume) is 1 when prediction and truth agree (FP = FN = 0) and 0 otherwise, so
a spurious or a missed region is scored as a failure, like its Dice, and never
as NaN: means over subjects stay defined and are not flattered by dropping the
failures. With a non-zero denominator every ratio equals medpy's.

Distances are computed inside the bounding box of both masks plus a one-voxel
margin (clipped to the grid): nothing outside it is in either mask, so the
surfaces and distances are those of the whole volume, at a fraction of the cost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from lesionseg.labels import LabelScheme
from lesionseg.masks import bounding_box

EMPTY_CASE_DISTANCE_MM: float = 373.13
"""Distance given to HD95, ASSD and Hausdorff when exactly one mask is empty:
the diagonal of the 240 x 240 x 155 mm BraTS box, sqrt(240^2 + 240^2 + 155^2)."""

METRICS: tuple[str, ...] = (
    "dice",
    "sensitivity",
    "specificity",
    "precision",
    "hd95",
    "assd",
    "hausdorff",
    "volume_truth_mm3",
    "volume_prediction_mm3",
    "volume_difference_mm3",
    "tp",
    "fp",
    "fn",
)
"""Names of the values :func:`binary_metrics` returns, in column order."""

_MARGIN = 1  # voxels around the bounding box; 0 would do, 1 keeps the crop's rim visibly outside both masks


def _check_pair(prediction: np.ndarray, truth: np.ndarray, what: str = "masks") -> None:
    if prediction.shape != truth.shape:
        raise ValueError(
            f"prediction and truth {what} differ in shape: prediction {prediction.shape}, truth {truth.shape}"
        )
    if prediction.ndim == 0:
        raise ValueError(f"prediction and truth {what} are scalars; need arrays of at least one dimension")


def _check_spacing(spacing: Sequence[float], ndim: int) -> tuple[float, ...]:
    values = tuple(float(s) for s in np.atleast_1d(np.asarray(spacing, dtype=np.float64)))
    if len(values) != ndim:
        raise ValueError(f"spacing {tuple(values)} has {len(values)} values for {ndim}-dimensional masks")
    if not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing {values} must be finite and positive (mm per axis)")
    return values


def _ratio(numerator: int, denominator: int, agree: bool) -> float:
    """``numerator / denominator``; 1 if the denominator is 0 and the masks agree, else 0 (module docstring)."""
    if denominator == 0:
        return 1.0 if agree else 0.0
    return numerator / denominator


def _surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a face neighbour outside it, the outside of the grid counting as outside.

    Equal to ``mask ^ binary_erosion(mask, generate_binary_structure(ndim, 1))`` (medpy), by array shifts.
    """
    interior = mask.copy()
    for axis in range(mask.ndim):
        n = mask.shape[axis]

        def cut(start: int, stop: int, axis: int = axis) -> tuple[slice, ...]:
            return tuple(slice(start, stop) if a == axis else slice(None) for a in range(mask.ndim))

        interior[cut(1, n)] &= mask[cut(0, n - 1)]
        interior[cut(0, n - 1)] &= mask[cut(1, n)]
        interior[cut(0, 1)] = False
        interior[cut(n - 1, n)] = False
    return mask & ~interior


def _surface_distances(
    prediction: np.ndarray, truth: np.ndarray, spacing: tuple[float, ...], crop: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Distances in mm from the prediction surface to the truth surface, and from the truth surface to the
    prediction surface (both masks non-empty). ``crop=False`` works on the whole grid (for tests)."""
    if crop:
        box = bounding_box(prediction | truth, _MARGIN)
        assert box is not None
        prediction, truth = prediction[box], truth[box]
    surface_prediction = _surface(prediction)
    surface_truth = _surface(truth)
    to_truth = ndimage.distance_transform_edt(~surface_truth, sampling=spacing)
    from_prediction = to_truth[surface_prediction]
    del to_truth
    to_prediction = ndimage.distance_transform_edt(~surface_prediction, sampling=spacing)
    from_truth = to_prediction[surface_truth]
    return from_prediction, from_truth


def binary_metrics(
    prediction: np.ndarray,
    truth: np.ndarray,
    spacing: Sequence[float],
    *,
    empty_distance_mm: float = EMPTY_CASE_DISTANCE_MM,
) -> dict[str, float]:
    """Every metric of :data:`METRICS` for one pair of masks (definitions in the module docstring).

    ``prediction`` and ``truth`` are arrays of one shape (non-zero means inside); ``spacing`` is the voxel size
    in mm per axis. ``empty_distance_mm`` is the HD95 / ASSD / Hausdorff given when exactly one mask is empty
    (default the BraTS value). Raises ``ValueError`` on a shape mismatch or a bad spacing.
    """
    prediction = np.asarray(prediction)
    truth = np.asarray(truth)
    _check_pair(prediction, truth)
    spacing_mm = _check_spacing(spacing, prediction.ndim)
    prediction = prediction.astype(bool, copy=False)
    truth = truth.astype(bool, copy=False)
    voxel_mm3 = math.prod(spacing_mm)

    tp = int(np.count_nonzero(prediction & truth))
    n_prediction = int(np.count_nonzero(prediction))
    n_truth = int(np.count_nonzero(truth))
    fp = n_prediction - tp
    fn = n_truth - tp
    tn = prediction.size - tp - fp - fn
    agree = fp == 0 and fn == 0

    if n_prediction == 0 and n_truth == 0:
        hd95 = assd = hausdorff = 0.0
    elif n_prediction == 0 or n_truth == 0:
        hd95 = assd = hausdorff = float(empty_distance_mm)
    else:
        from_prediction, from_truth = _surface_distances(prediction, truth, spacing_mm)
        pooled = np.concatenate([from_prediction, from_truth])
        hd95 = float(np.percentile(pooled, 95))
        assd = float(pooled.mean())
        hausdorff = float(pooled.max())

    return {
        "dice": _ratio(2 * tp, n_prediction + n_truth, agree),
        "sensitivity": _ratio(tp, tp + fn, agree),
        "specificity": _ratio(tn, tn + fp, agree),
        "precision": _ratio(tp, tp + fp, agree),
        "hd95": hd95,
        "assd": assd,
        "hausdorff": hausdorff,
        "volume_truth_mm3": n_truth * voxel_mm3,
        "volume_prediction_mm3": n_prediction * voxel_mm3,
        "volume_difference_mm3": (n_prediction - n_truth) * voxel_mm3,
        "tp": float(tp),
        "fp": float(fp),
        "fn": float(fn),
    }


def region_metrics(
    prediction_raw: np.ndarray,
    truth_raw: np.ndarray,
    scheme: LabelScheme,
    spacing: Sequence[float],
    *,
    empty_distance_mm: float = EMPTY_CASE_DISTANCE_MM,
) -> dict[str, dict[str, float]]:
    """:func:`binary_metrics` of every evaluation region of ``scheme``, from raw label maps: region -> metrics."""
    prediction_raw = np.asarray(prediction_raw)
    truth_raw = np.asarray(truth_raw)
    _check_pair(prediction_raw, truth_raw, "label maps")
    return {
        region: binary_metrics(
            scheme.region_mask(prediction_raw, region),
            scheme.region_mask(truth_raw, region),
            spacing,
            empty_distance_mm=empty_distance_mm,
        )
        for region in scheme.regions
    }


def segmentation_volumes(
    prediction_raw: np.ndarray, scheme: LabelScheme, spacing: Sequence[float]
) -> dict[str, float]:
    """Volume in mm^3 of every evaluation region of ``scheme`` in a raw label map (subjects without truth)."""
    prediction_raw = np.asarray(prediction_raw)
    voxel_mm3 = math.prod(_check_spacing(spacing, prediction_raw.ndim))
    return {
        region: int(np.count_nonzero(scheme.region_mask(prediction_raw, region))) * voxel_mm3
        for region in scheme.regions
    }


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two masks; 1 when both are empty (BraTS convention). Cheaper than :func:`binary_metrics`."""
    prediction = np.asarray(prediction)
    truth = np.asarray(truth)
    _check_pair(prediction, truth)
    prediction = prediction.astype(bool, copy=False)
    truth = truth.astype(bool, copy=False)
    total = int(np.count_nonzero(prediction)) + int(np.count_nonzero(truth))
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(prediction & truth)) / total


def region_dice(prediction_raw: np.ndarray, truth_raw: np.ndarray, scheme: LabelScheme) -> dict[str, float]:
    """Dice of every evaluation region of ``scheme`` (raw label maps), e.g. for validation during training."""
    prediction_raw = np.asarray(prediction_raw)
    truth_raw = np.asarray(truth_raw)
    _check_pair(prediction_raw, truth_raw, "label maps")
    return {
        region: dice(scheme.region_mask(prediction_raw, region), scheme.region_mask(truth_raw, region))
        for region in scheme.regions
    }
