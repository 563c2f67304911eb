"""Post-processing of segmentations, chosen per region on the labelled validation split (as nnU-Net does).

Isensee et al. (2021), "nnU-Net: a self-configuring method for deep
learning-based biomedical image segmentation", Nature Methods 18, 203-211: after
training, nnU-Net tries, per foreground region, keeping only the largest connected
component on the validation cases and keeps the step where it raises the Dice.
Here every evaluation region of the label scheme (WT / TC / ET, or lesion) has
three kinds of candidate operation:

- ``none``: the region as segmented;
- ``min_size``: remove the region's connected components smaller than a volume
  in mm^3 (one candidate per configured volume);
- ``largest_component``: keep only the region's largest connected component.

Voxels of the region in a removed component become background (class 0). Components
are 26-connected, like :func:`lesionseg.inference.outputs.remove_small_components`,
and their volumes come from the voxel spacing, so a choice made on the
preprocessing grid applies on the original grid.

The choice is greedy, region by region in scheme order (each region's operation
applies after those of the regions before it): the candidate that maximises the
mean validation Dice over every region and subject, given the choices already
made, is taken only if it raises that mean by more than :data:`MIN_GAIN`. Ties
go to the gentler candidate (smaller volumes first, the largest component last).
Removing a region's voxels can lower the Dice of the regions that contain it
(TC voxels are WT voxels too), which is why every region counts in the mean.

Class maps are ``(x, y, z)`` arrays of class indices, the argmax of a network's
probabilities; a class belongs to a region if the raw value it is written with
(its first) is one of the region's, as in the evaluation of the written segmentation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from lesionseg.evaluation.metrics import region_dice
from lesionseg.labels import LabelScheme
from lesionseg.masks import bounding_box

NONE = "none"
MIN_SIZE = "min_size"
LARGEST_COMPONENT = "largest_component"
OPERATIONS: tuple[str, ...] = (NONE, MIN_SIZE, LARGEST_COMPONENT)
"""Kinds of operation on one region."""

MIN_GAIN = 1e-6
"""Rise of the mean validation Dice an operation must bring to be chosen (more than rounding noise)."""


@dataclass(frozen=True)
class RegionOperation:
    """What is done to one region: nothing, removing components below ``min_component_mm3``, or keeping the
    largest component."""

    kind: str = NONE
    min_component_mm3: float | None = None  # mm^3, for kind min_size only

    def __post_init__(self) -> None:
        if self.kind not in OPERATIONS:
            raise ValueError(f"post-processing operation {self.kind!r} is not one of {OPERATIONS}")
        if self.kind == MIN_SIZE and not (self.min_component_mm3 is not None and self.min_component_mm3 > 0):
            raise ValueError(f"operation {MIN_SIZE} needs a positive min_component_mm3, not {self.min_component_mm3}")
        if self.kind != MIN_SIZE and self.min_component_mm3 is not None:
            raise ValueError(f"operation {self.kind} takes no min_component_mm3 (got {self.min_component_mm3})")

    def describe(self) -> str:
        """``none``, ``largest component`` or ``components < 250 mm³ removed``."""
        if self.kind == MIN_SIZE:
            return f"components < {self.min_component_mm3:g} mm³ removed"
        return self.kind.replace("_", " ")

    def to_mapping(self) -> dict[str, Any]:
        mapping: dict[str, Any] = {"operation": self.kind}
        if self.kind == MIN_SIZE:
            mapping["min_component_mm3"] = self.min_component_mm3
        return mapping

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> RegionOperation:
        volume = mapping.get("min_component_mm3")
        return cls(str(mapping["operation"]), None if volume is None else float(volume))


@dataclass(frozen=True)
class PostprocessingChoice:
    """The operation of every region, in the order they apply (the label scheme's)."""

    operations: Mapping[str, RegionOperation]

    def to_mapping(self) -> dict[str, dict[str, Any]]:
        """``{region: {operation: ..., [min_component_mm3: ...]}}``, for YAML."""
        return {region: operation.to_mapping() for region, operation in self.operations.items()}

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Mapping[str, Any]]) -> PostprocessingChoice:
        return cls({str(region): RegionOperation.from_mapping(entry) for region, entry in mapping.items()})


@dataclass(frozen=True)
class RegionComponents:
    """The connected components of one region in a class map."""

    labels: np.ndarray  # like the class map: component number 1..n, 0 outside the region
    volumes_mm3: np.ndarray  # (n,): volume of component k at index k - 1

    @classmethod
    def of(cls, classes: np.ndarray, scheme: LabelScheme, region: str,
           spacing: Sequence[float]) -> RegionComponents:
        labels, count = ndi.label(np.isin(classes, scheme.region_classes(region)),
                                  structure=np.ones((3,) * classes.ndim, dtype=bool))
        voxel_mm3 = float(np.prod(np.asarray(spacing, dtype=np.float64)))
        return cls(labels, np.bincount(labels.ravel(), minlength=count + 1)[1:] * voxel_mm3)

    def removed(self, operation: RegionOperation) -> np.ndarray:
        """Boolean mask of the voxels ``operation`` sets to background."""
        if operation.kind == NONE or self.volumes_mm3.size == 0:
            return np.zeros(self.labels.shape, dtype=bool)
        if operation.kind == MIN_SIZE:
            dropped = self.volumes_mm3 < operation.min_component_mm3
        else:
            dropped = np.ones(self.volumes_mm3.size, dtype=bool)
            dropped[np.argmax(self.volumes_mm3)] = False  # the first of equally large components stays
        return np.concatenate([[False], dropped])[self.labels]


def _without(classes: np.ndarray, removed: np.ndarray) -> np.ndarray:
    if not removed.any():
        return classes
    cleaned = classes.copy()
    cleaned[removed] = 0
    return cleaned


def apply_operation(classes: np.ndarray, scheme: LabelScheme, region: str, operation: RegionOperation,
                    spacing: Sequence[float]) -> np.ndarray:
    """The class map with ``operation`` applied to ``region`` (voxel ``spacing`` in mm); the input is not modified."""
    if operation.kind == NONE:
        return classes
    return _without(classes, RegionComponents.of(classes, scheme, region, spacing).removed(operation))


def apply_choice(classes: np.ndarray, scheme: LabelScheme, choice: PostprocessingChoice,
                 spacing: Sequence[float]) -> np.ndarray:
    """The class map with every region's operation applied, in the choice's order."""
    unknown = set(choice.operations) - set(scheme.regions)
    if unknown:
        raise ValueError(f"post-processing of regions {sorted(unknown)}, which label scheme {scheme.name!r} does not "
                         f"have (regions {list(scheme.regions)}); choose it again for this dataset")
    for region, operation in choice.operations.items():
        classes = apply_operation(classes, scheme, region, operation, spacing)
    return classes


@dataclass(frozen=True)
class ValidationSegmentation:
    """One validation subject's segmentation and truth, on one grid."""

    name: str
    classes: np.ndarray  # (x, y, z) class indices
    truth: np.ndarray  # (x, y, z) raw label values
    spacing: tuple[float, ...]  # mm

    @classmethod
    def cropped(cls, name: str, classes: np.ndarray, truth: np.ndarray,
                spacing: Sequence[float]) -> ValidationSegmentation:
        """The subject inside the bounding box of both foregrounds: components and Dice are the same there, at
        a fraction of the memory and time."""
        if classes.shape != truth.shape:
            raise ValueError(f"validation subject {name}: segmentation of shape {classes.shape}, truth of shape "
                             f"{truth.shape}; both must be on one grid")
        box = bounding_box((classes > 0) | (truth > 0), margin=1)
        if box is None:
            box = tuple(slice(0, 1) for _ in classes.shape)
        return cls(name, np.ascontiguousarray(classes[box]), np.ascontiguousarray(truth[box]),
                   tuple(float(s) for s in spacing))


def mean_region_dice(segmentations: Sequence[np.ndarray], cases: Sequence[ValidationSegmentation],
                     scheme: LabelScheme) -> dict[str, float]:
    """Mean over the cases of each region's Dice (class maps ``segmentations`` against the cases' truths)."""
    scores = [region_dice(scheme.to_raw(classes), case.truth, scheme)
              for classes, case in zip(segmentations, cases, strict=True)]
    return {region: float(np.mean([s[region] for s in scores])) for region in scheme.regions}


@dataclass(frozen=True)
class PostprocessingSearch:
    """The outcome of :func:`choose_postprocessing`."""

    choice: PostprocessingChoice
    dice_before: dict[str, float]  # mean validation Dice per region without post-processing
    dice_after: dict[str, float]  # and with the choice
    candidates: list[dict[str, Any]]  # region, operation, min_component_mm3, mean_dice (all regions), chosen


def _applied(operation: RegionOperation, segmentations: Sequence[np.ndarray],
             components: Sequence[RegionComponents]) -> list[np.ndarray]:
    return [_without(classes, found.removed(operation))
            for classes, found in zip(segmentations, components, strict=True)]


def _mean_dice(segmentations: Sequence[np.ndarray], cases: Sequence[ValidationSegmentation],
               scheme: LabelScheme) -> float:
    """Mean Dice over every region and case (each region's mean over the cases, then their mean)."""
    return float(np.mean(list(mean_region_dice(segmentations, cases, scheme).values())))


def candidate_operations(candidates_mm3: Sequence[float]) -> list[RegionOperation]:
    """Every operation tried on a region after ``none``, gentlest first."""
    volumes = sorted({float(v) for v in candidates_mm3 if v > 0})
    return [*(RegionOperation(MIN_SIZE, v) for v in volumes), RegionOperation(LARGEST_COMPONENT)]


def choose_postprocessing(cases: Sequence[ValidationSegmentation], scheme: LabelScheme,
                          candidates_mm3: Sequence[float]) -> PostprocessingSearch:
    """Greedy choice of one operation per region on the validation cases (module docstring)."""
    if not cases:
        raise ValueError("choosing the post-processing needs at least one labelled validation subject")
    current = [case.classes for case in cases]
    before = mean_region_dice(current, cases, scheme)
    operations: dict[str, RegionOperation] = {}
    rows: list[dict[str, Any]] = []
    for region in scheme.regions:
        components = [RegionComponents.of(classes, scheme, region, case.spacing)
                      for classes, case in zip(current, cases, strict=True)]
        scores = {operation: _mean_dice(_applied(operation, current, components), cases, scheme)
                  for operation in [RegionOperation(), *candidate_operations(candidates_mm3)]}
        best = max(scores, key=scores.__getitem__)  # the first of equal scores: none, then the gentlest
        chosen = best if scores[best] > scores[RegionOperation()] + MIN_GAIN else RegionOperation()
        operations[region] = chosen
        current = _applied(chosen, current, components)
        rows += [{"region": region, "operation": operation.kind, "min_component_mm3": operation.min_component_mm3,
                  "mean_dice": score, "chosen": operation == chosen} for operation, score in scores.items()]
    return PostprocessingSearch(PostprocessingChoice(operations), before, mean_region_dice(current, cases, scheme),
                                rows)
