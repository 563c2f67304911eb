"""Which segmentations need a look: a quality score per subject, computed without the truth.

For each subject, method and evaluation region, from the method's probabilities (preprocessing grid) and the
mutual information of its network's averaged predictions (:mod:`lesionseg.inference.uncertainty`):

- the **expected Dice**: the Dice of the segmentation ``s`` against the network's probabilities ``p`` (the
  method's own, or for a method after the CRF its network's, since the CRF's marginals are nearly 0 or 1),
  ``2 sum(p * s) / (sum(p) + sum(s))``: about what the Dice would be if the probabilities were calibrated. A
  confident segmentation scores near 1, a hesitant one lower. For a region predicted empty it is the chance
  that the truth is empty too, ``exp(-sum(p))`` (the evaluation scores empty against empty as 1);
- the **uncertainty**: the mean entropy of the region's probability (the network's) inside the predicted region;
- the **disagreement**: the mean mutual information inside the predicted region (0 for a single prediction);
- the predicted **volume** (ml).

A **quality model** per method, fitted on the labelled validation subjects (out-of-fold with cross-validation),
turns the expected Dice into a **predicted Dice** per region (least squares ``true ~ a + b * expected``,
clipped to [0, 1]; with fewer than :data:`MIN_FIT_SUBJECTS` subjects the expected Dice is used as it is), and
records what the training data looked like: each region's volume range and whether it was ever empty, and each
modality's intensity statistics after preprocessing (:func:`image_features`). A subject is **flagged**, with
the reasons, when

- a region's predicted Dice is below :data:`LOW_DICE`;
- its uncertainty or disagreement exceeds every validation subject's by :data:`OUTLIER_FACTOR`;
- a predicted volume lies outside the training range (beyond :data:`VOLUME_FACTOR` times its ends);
- a region is predicted empty although no training subject had it empty;
- an input's texture (:data:`CHECKED_STATISTICS`) lies outside the training range, widened by
  :data:`RANGE_MARGIN` of its span (at least :data:`RANGE_FLOOR` of its upper end): a modality replaced by noise,
  two modalities swapped, a strong bias field.

The ideas follow Jungo & Reyes 2019 (uncertainty estimates aggregated per structure flag failed
segmentations) and Roy et al. 2019 (structure-wise quality from prediction agreement). The score ranks subjects
for review; it is no substitute for the truth (README "Quality control").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from lesionseg.inference.uncertainty import normalised_entropy
from lesionseg.labels import LabelScheme

MIN_FIT_SUBJECTS = 4
"""Fewest validation subjects with the region in truth or prediction for a fitted predicted Dice."""
LOW_DICE = 0.5
"""A region's predicted Dice below this flags the subject."""
OUTLIER_FACTOR = 1.5
"""Uncertainty or disagreement above this many times the highest of the validation subjects flags a subject."""
VOLUME_FACTOR = 3.0
"""A predicted volume below the smallest training volume / this, or above the largest * this, flags a subject."""
RANGE_MARGIN = 0.5
"""Checked statistics may lie this fraction of the training span outside the training range ..."""
RANGE_FLOOR = 0.1
"""... or this fraction of the range's upper end, if that is more: a range from one or two training subjects has
next to no span. (A FLAIR filled with noise has a roughness of 0.84; clean synthetic FLAIRs at 4 mm reach 0.72.)"""
IMAGE_STATISTICS = ("p01", "p50", "p99", "roughness")
"""Per modality, inside the brain: percentiles 1, 50 and 99, and the roughness, the mean absolute difference of
neighbouring voxels over the interquartile range (0.84 for pure noise, 0.35-0.7 for the synthetic MR images)."""
CHECKED_STATISTICS = ("roughness",)
"""The statistics a subject is flagged on. After the z-scoring the percentiles follow the lesion's size and
contrast (the 99th of a post-contrast T1 ranged 1.9-4.4 over 8 clean synthetic subjects), so they are recorded for
a reader but not checked; the roughness stayed within 0.36-0.39 there, and a noise-filled, swapped or
bias-ridden modality moves it far outside."""


# --------------------------------------------------------------------------------------------------------------
# Features


@dataclass(frozen=True)
class RegionFeatures:
    """What a method's probabilities say about one region of one subject (see the module's description)."""

    volume_ml: float
    expected_dice: float
    uncertainty: float
    disagreement: float


def segmentation_features(probabilities: np.ndarray, mutual_information: np.ndarray, scheme: LabelScheme,
                          voxel_ml: float, network_probabilities: np.ndarray | None = None
                          ) -> dict[str, RegionFeatures]:
    """Region -> its features, from a method's ``(class, x, y, z)`` probabilities (its segmentation: a region
    where its probability is at least 0.5), the ``(x, y, z)`` mutual information and, for a method after the
    CRF, its network's probabilities (None: the method's own are the network's)."""
    belief = probabilities if network_probabilities is None else network_probabilities
    features = {}
    for region in scheme.regions:
        predicted = scheme.region_probability(probabilities, region) >= 0.5
        p = np.clip(scheme.region_probability(belief, region), 0.0, 1.0)
        n_predicted = int(np.count_nonzero(predicted))
        if n_predicted:
            expected = float(2 * p[predicted].sum() / (p.sum() + n_predicted))
        else:
            expected = float(np.exp(-p.sum()))
        if n_predicted:
            entropy = normalised_entropy(np.stack([p[predicted], 1 - p[predicted]]))
            uncertainty, disagreement = float(entropy.mean()), float(mutual_information[predicted].mean())
        else:
            uncertainty = disagreement = 0.0
        features[region] = RegionFeatures(n_predicted * voxel_ml, expected, uncertainty, disagreement)
    return features


def image_features(image: np.ndarray, brain: np.ndarray, modalities: Sequence[str]) -> dict[str, dict[str, float]]:
    """Modality -> :data:`IMAGE_STATISTICS` of a preprocessed image ``(x, y, z, c)`` inside ``brain``."""
    if image.ndim == 3:
        image = image[..., None]
    statistics = {}
    for channel, modality in enumerate(modalities):
        volume = image[..., channel]
        values = volume[brain]
        if values.size == 0:
            statistics[modality] = dict.fromkeys(IMAGE_STATISTICS, 0.0)
            continue
        p01, q25, p50, q75, p99 = (float(v) for v in np.percentile(values, [1, 25, 50, 75, 99]))
        steps = []
        for axis in range(3):
            ahead = [slice(None)] * 3
            behind = [slice(None)] * 3
            ahead[axis], behind[axis] = slice(1, None), slice(None, -1)
            both = brain[tuple(ahead)] & brain[tuple(behind)]
            steps.append(np.abs(volume[tuple(ahead)] - volume[tuple(behind)])[both])
        difference = float(np.concatenate(steps).mean()) if sum(s.size for s in steps) else 0.0
        statistics[modality] = {"p01": p01, "p50": p50, "p99": p99,
                                "roughness": difference / max(q75 - q25, 1e-6)}
    return statistics


# --------------------------------------------------------------------------------------------------------------
# The quality model


@dataclass(frozen=True)
class DiceFit:
    """Predicted Dice = clip(intercept + slope * expected Dice) of one region, and what it was fitted on."""

    intercept: float = 0.0
    slope: float = 1.0
    subjects: int = 0
    fitted: bool = False

    def predict(self, expected_dice: float) -> float:
        return float(np.clip(self.intercept + self.slope * expected_dice, 0.0, 1.0))


def fit_dice(expected: Sequence[float], true: Sequence[float]) -> DiceFit:
    """Least squares of the true Dice on the expected Dice; the identity (unfitted) with too few subjects or no
    spread in the expected Dice."""
    x, y = np.asarray(expected, dtype=float), np.asarray(true, dtype=float)
    if x.size < MIN_FIT_SUBJECTS or np.ptp(x) < 1e-6:
        return DiceFit(subjects=int(x.size))
    slope, intercept = np.polyfit(x, y, 1)
    return DiceFit(float(intercept), float(slope), int(x.size), True)


@dataclass(frozen=True)
class QualityModel:
    """What a method's scores are compared with (see the module's description); stored as YAML."""

    dice: Mapping[str, DiceFit]
    max_uncertainty: Mapping[str, float]  # highest of the validation subjects, per region
    max_disagreement: Mapping[str, float]
    volume_range_ml: Mapping[str, tuple[float, float]]  # training truth volumes of subjects that have the region
    never_empty: Sequence[str]  # regions every training subject had
    intensity_range: Mapping[str, Mapping[str, tuple[float, float]]]  # modality -> statistic -> (min, max)
    validation_subjects: Sequence[str] = field(default_factory=list)
    training_subjects: int = 0

    def to_mapping(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, Mapping):
                return {str(k): plain(v) for k, v in value.items()}
            if isinstance(value, tuple | list):
                return [plain(v) for v in value]
            if isinstance(value, float):
                return round(value, 6)
            return value

        return plain({**asdict(self), "dice": {r: asdict(fit) for r, fit in self.dice.items()}})

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> QualityModel:
        return cls(
            dice={r: DiceFit(**fit) for r, fit in mapping["dice"].items()},
            max_uncertainty=dict(mapping["max_uncertainty"]),
            max_disagreement=dict(mapping["max_disagreement"]),
            volume_range_ml={r: tuple(v) for r, v in mapping["volume_range_ml"].items()},
            never_empty=list(mapping["never_empty"]),
            intensity_range={m: {s: tuple(v) for s, v in stats.items()}
                             for m, stats in mapping["intensity_range"].items()},
            validation_subjects=list(mapping.get("validation_subjects", [])),
            training_subjects=int(mapping.get("training_subjects", 0)),
        )


def fit_quality_model(validation: Mapping[str, Mapping[str, RegionFeatures]],
                      validation_dice: Mapping[str, Mapping[str, float]],
                      training_volumes_ml: Sequence[Mapping[str, float]],
                      training_images: Sequence[Mapping[str, Mapping[str, float]]],
                      regions: Sequence[str]) -> QualityModel:
    """The quality model of a method from its validation subjects' features and true Dice (subject -> region),
    the training subjects' truth volumes (region -> ml) and image statistics (:func:`image_features`)."""
    dice, max_uncertainty, max_disagreement, volume_range, never_empty = {}, {}, {}, {}, []
    for region in regions:
        pairs = [(validation[s][region].expected_dice, validation_dice[s][region]) for s in validation
                 if not math.isnan(validation_dice[s][region])]
        dice[region] = fit_dice([e for e, _ in pairs], [t for _, t in pairs])
        max_uncertainty[region] = max((validation[s][region].uncertainty for s in validation), default=0.0)
        max_disagreement[region] = max((validation[s][region].disagreement for s in validation), default=0.0)
        volumes = [v[region] for v in training_volumes_ml if v[region] > 0]
        volume_range[region] = (min(volumes), max(volumes)) if volumes else (0.0, 0.0)
        if training_volumes_ml and len(volumes) == len(training_volumes_ml):
            never_empty.append(region)
    intensity: dict[str, dict[str, tuple[float, float]]] = {}
    for statistics in training_images:
        for modality, values in statistics.items():
            for name, value in values.items():
                low, high = intensity.setdefault(modality, {}).get(name, (value, value))
                intensity[modality][name] = (min(low, value), max(high, value))
    return QualityModel(dice, max_uncertainty, max_disagreement, volume_range, never_empty, intensity,
                        sorted(validation), len(training_volumes_ml))


# --------------------------------------------------------------------------------------------------------------
# Scores and flags


@dataclass(frozen=True)
class SubjectQuality:
    """A subject's predicted Dice per region, its score (the lowest) and the reasons it is flagged (none: fine)."""

    subject: str
    predicted_dice: Mapping[str, float]
    features: Mapping[str, RegionFeatures]
    reasons: Sequence[str]

    @property
    def score(self) -> float:
        return min(self.predicted_dice.values())

    @property
    def flagged(self) -> bool:
        return bool(self.reasons)


def _outside(value: float, low: float, high: float) -> bool:
    margin = max(RANGE_MARGIN * (high - low), RANGE_FLOOR * abs(high))
    return value < low - margin - 1e-9 or value > high + margin + 1e-9


def assess_subject(subject: str, features: Mapping[str, RegionFeatures],
                   image_statistics: Mapping[str, Mapping[str, float]] | None, model: QualityModel) -> SubjectQuality:
    """Predicted Dice and flags of one subject under a method's quality model."""
    predicted = {region: model.dice[region].predict(f.expected_dice) for region, f in features.items()}
    reasons = []
    for region, f in features.items():
        if predicted[region] < LOW_DICE:
            reasons.append(f"{region}: predicted Dice {predicted[region]:.2f} < {LOW_DICE}")
        if model.max_uncertainty[region] > 0 and f.uncertainty > OUTLIER_FACTOR * model.max_uncertainty[region]:
            reasons.append(f"{region}: uncertainty {f.uncertainty:.2f} above the validation subjects' "
                           f"({model.max_uncertainty[region]:.2f})")
        if model.max_disagreement[region] > 0 and f.disagreement > OUTLIER_FACTOR * model.max_disagreement[region]:
            reasons.append(f"{region}: the averaged predictions disagree ({f.disagreement:.2f}, validation at most "
                           f"{model.max_disagreement[region]:.2f})")
        low, high = model.volume_range_ml[region]
        if f.volume_ml > 0 and high > 0 and not low / VOLUME_FACTOR <= f.volume_ml <= high * VOLUME_FACTOR:
            reasons.append(f"{region}: volume {f.volume_ml:.1f} ml outside the training range "
                           f"{low:.1f}-{high:.1f} ml")
        if f.volume_ml == 0 and region in model.never_empty:
            reasons.append(f"{region}: empty, but every training subject had it")
    for modality, statistics in (image_statistics or {}).items():
        ranges = model.intensity_range.get(modality, {})
        outside = [name for name, value in statistics.items()
                   if name in CHECKED_STATISTICS and name in ranges and _outside(value, *ranges[name])]
        if outside:
            reasons.append(f"{modality}: intensities unlike the training images ({', '.join(outside)})")
    return SubjectQuality(subject, predicted, features, reasons)


def quality_table(assessed: Sequence[SubjectQuality]) -> list[dict[str, Any]]:
    """Rows for a CSV, the subjects to review first: flagged ones, then by score (lowest first)."""
    rows = []
    for quality in sorted(assessed, key=lambda q: (not q.flagged, q.score, q.subject)):
        row: dict[str, Any] = {"subject": quality.subject, "score": round(quality.score, 4),
                               "flagged": quality.flagged, "reasons": "; ".join(quality.reasons)}
        for region, predicted in quality.predicted_dice.items():
            row[f"predicted_dice_{region}"] = round(predicted, 4)
        for region, f in quality.features.items():
            row[f"expected_dice_{region}"] = round(f.expected_dice, 4)
            row[f"uncertainty_{region}"] = round(f.uncertainty, 4)
            row[f"disagreement_{region}"] = round(f.disagreement, 4)
            row[f"volume_ml_{region}"] = round(f.volume_ml, 3)
        rows.append(row)
    return rows
