"""Calibration of a method's probabilities: reliability histograms, ECE, MCE and the Brier score per region.

A method is *calibrated* when, among the voxels it gives a probability of about
p for a region, a fraction of about p is in that region (Guo et al. 2017, "On
calibration of modern neural networks", ICML; for segmentation Mehrtash et al.
2020, "Confidence calibration and predictive uncertainty estimation for deep
medical image segmentation", IEEE TMI). Here calibration is judged per
evaluation region of the dataset's label scheme (BraTS whole tumour, tumour core,
enhancing tumour; or the single lesion region), as a *binary* problem:

- the region's probability of a voxel is the sum of the probabilities of the
  classes whose segmentation lies in the region (a class counts for a region
  when the raw value its segmentation is written with, its first, is one of the
  region's values: the same classes as the region of the segmentation that is
  scored), and the truth is 1 where the truth's raw value is one of the region's;
- only voxels inside the brain count (the subject's brain mask on its original
  grid, ``results/{dataset}/brain_masks/{subject}``, > 0.5 like every given
  mask). The millions of background voxels outside the brain have probability
  0 and truth 0: counting them makes every method look calibrated (its ECE is
  then mostly the share of easy voxels times nearly nothing). A truth voxel
  outside the brain mask is left out as well;
- the probabilities are binned in :data:`N_BINS` equal-width bins of [0, 1],
  bin ``b`` holding ``b / N <= p < (b + 1) / N`` (p = 1 in the last one). Per
  bin the histogram holds the voxel count ``n_b``, the sum of p, the sum of the
  truth and the sum of ``(p - truth)^2``: sums, so that subjects are added one by
  one (one subject in memory) and the result is the same as all at once;
- expected calibration error ``ECE = sum_b n_b / N |mean p_b - freq_b|`` (N all
  counted voxels, ``freq_b`` the fraction of the bin's voxels in the region);
  maximum calibration error ``MCE = max_b |mean p_b - freq_b|`` over the
  non-empty bins; the Brier score ``mean (p - truth)^2`` over all counted voxels
  (0 best, lower is better for all three).

This is not the multi-class ECE of the "confidence of the predicted class"
(Guo et al.'s main definition): a region's probability is judged whether or not
it is the largest, so that a network that is right about the whole tumour but
not about its core shows it. Voxels are pooled over the subjects (each voxel
weighs the same), as Mehrtash et al. do.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lesionseg.labels import LabelScheme
from lesionseg.masks import GIVEN_MASK_THRESHOLD

if TYPE_CHECKING:
    import pandas as pd

PathLike = str | os.PathLike

N_BINS: int = 15
"""Equal-width confidence bins of [0, 1] (Guo et al. 2017 use 15)."""

BIN_COLUMNS: tuple[str, ...] = ("region", "bin", "lower", "upper", "count", "sum_probability", "sum_truth",
                                "sum_squared_error", "mean_probability", "observed_frequency")
"""Columns of a method's reliability table (``calibration.csv``): one row per region and bin; the sums are what is
accumulated, the means follow from them (empty for an empty bin)."""

SUMMARY_COLUMNS: tuple[str, ...] = ("region", "subjects", "voxels", "prevalence", "mean_probability", "ece", "mce",
                                    "brier")
"""Columns of a method's calibration summary (``calibration_summary.csv``): one row per region. ``voxels``: the
brain voxels counted, ``prevalence``: the fraction of them in the region, ``mean_probability``: the mean region
probability over them (equal to the prevalence for a method that predicts the region's volume right)."""


@dataclass
class ReliabilityHistogram:
    """Per confidence bin, the voxel count and the sums of the probability, of the truth and of the squared error
    (module docstring). Add voxels with :meth:`add`, subjects' histograms with :meth:`merge`."""

    count: np.ndarray = field(default_factory=lambda: np.zeros(N_BINS, dtype=np.int64))
    sum_probability: np.ndarray = field(default_factory=lambda: np.zeros(N_BINS))
    sum_truth: np.ndarray = field(default_factory=lambda: np.zeros(N_BINS))
    sum_squared_error: np.ndarray = field(default_factory=lambda: np.zeros(N_BINS))

    @classmethod
    def empty(cls, n_bins: int = N_BINS) -> ReliabilityHistogram:
        if n_bins < 1:
            raise ValueError(f"a reliability histogram needs at least one bin, not {n_bins}")
        return cls(np.zeros(n_bins, dtype=np.int64), np.zeros(n_bins), np.zeros(n_bins), np.zeros(n_bins))

    @property
    def n_bins(self) -> int:
        return int(self.count.size)

    @property
    def edges(self) -> np.ndarray:
        """The ``n_bins + 1`` bin edges, 0 to 1."""
        return np.linspace(0.0, 1.0, self.n_bins + 1)

    @property
    def total(self) -> int:
        """Voxels counted."""
        return int(self.count.sum())

    def bin_of(self, probability: np.ndarray) -> np.ndarray:
        """The bin of each probability (clipped to [0, 1]; 1 falls in the last bin)."""
        p = np.clip(np.asarray(probability, dtype=np.float64), 0.0, 1.0)
        return np.minimum((p * self.n_bins).astype(np.int64), self.n_bins - 1)

    def add(self, probability: np.ndarray, truth: np.ndarray) -> None:
        """Count voxels: their region probabilities and their truth (bool or 0/1), arrays of one shape.

        Probabilities are clipped to [0, 1] first (a sum of stored class probabilities may exceed 1 by rounding).
        """
        probability = np.asarray(probability)
        truth = np.asarray(truth)
        if probability.shape != truth.shape:
            raise ValueError(f"probabilities of shape {probability.shape} and truth of shape {truth.shape} differ")
        p = np.clip(probability.astype(np.float64, copy=False).ravel(), 0.0, 1.0)
        y = truth.ravel().astype(np.float64)
        bins = self.bin_of(p)
        n = self.n_bins
        self.count += np.bincount(bins, minlength=n)
        self.sum_probability += np.bincount(bins, weights=p, minlength=n)
        self.sum_truth += np.bincount(bins, weights=y, minlength=n)
        self.sum_squared_error += np.bincount(bins, weights=(p - y) ** 2, minlength=n)

    def merge(self, other: ReliabilityHistogram) -> None:
        """Add another histogram's voxels (another subject's) to this one."""
        if other.n_bins != self.n_bins:
            raise ValueError(f"cannot merge histograms of {other.n_bins} and {self.n_bins} bins")
        self.count += other.count
        self.sum_probability += other.sum_probability
        self.sum_truth += other.sum_truth
        self.sum_squared_error += other.sum_squared_error

    def mean_probability(self) -> np.ndarray:
        """Mean probability per bin (NaN for an empty bin)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.sum_probability / self.count, np.nan)

    def observed_frequency(self) -> np.ndarray:
        """Fraction of each bin's voxels in the region (NaN for an empty bin)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.sum_truth / self.count, np.nan)

    def gaps(self) -> np.ndarray:
        """``|mean p - observed frequency|`` per bin (NaN for an empty bin)."""
        return np.abs(self.mean_probability() - self.observed_frequency())

    def ece(self) -> float:
        """Expected calibration error: the bins' gaps weighted by their share of the voxels (NaN with none)."""
        total = self.total
        if total == 0:
            return math.nan
        filled = self.count > 0
        return float(np.sum(self.count[filled] / total * self.gaps()[filled]))

    def mce(self) -> float:
        """Maximum calibration error: the largest gap of a non-empty bin (NaN with none)."""
        filled = self.count > 0
        return float(self.gaps()[filled].max()) if filled.any() else math.nan

    def brier(self) -> float:
        """Brier score: the mean squared difference of probability and truth over all voxels (NaN with none)."""
        total = self.total
        return float(self.sum_squared_error.sum() / total) if total else math.nan


def empty_histograms(scheme: LabelScheme, n_bins: int = N_BINS) -> dict[str, ReliabilityHistogram]:
    """One empty histogram per region of ``scheme``."""
    return {region: ReliabilityHistogram.empty(n_bins) for region in scheme.regions}


def add_subject(histograms: Mapping[str, ReliabilityHistogram], probabilities: np.ndarray, truth_raw: np.ndarray,
                brain: np.ndarray, scheme: LabelScheme) -> None:
    """Count one subject's brain voxels in each region's histogram: ``probabilities`` ``(class, x, y, z)``, the
    truth's raw label map and the brain (bool), all on one grid."""
    truth_raw = np.asarray(truth_raw)
    brain = np.asarray(brain, dtype=bool)
    if not (probabilities.shape[1:] == truth_raw.shape == brain.shape):
        raise ValueError(f"probabilities {probabilities.shape[1:]}, truth {truth_raw.shape} and brain mask "
                         f"{brain.shape} are not on one grid")
    inside = np.asarray(probabilities)[:, brain]  # (class, voxels): only the brain's voxels are kept
    truth = truth_raw[brain]
    for region in scheme.regions:
        histograms[region].add(scheme.region_probability(inside, region), scheme.region_mask(truth, region))


def calibration_summary(histograms: Mapping[str, ReliabilityHistogram], subjects: int) -> list[dict[str, Any]]:
    """One row per region of :data:`SUMMARY_COLUMNS` (``subjects``: how many subjects the histograms hold)."""
    rows = []
    for region, histogram in histograms.items():
        total = histogram.total
        rows.append({
            "region": region, "subjects": subjects, "voxels": total,
            "prevalence": float(histogram.sum_truth.sum() / total) if total else math.nan,
            "mean_probability": float(histogram.sum_probability.sum() / total) if total else math.nan,
            "ece": histogram.ece(), "mce": histogram.mce(), "brier": histogram.brier(),
        })
    return rows


def bin_rows(histograms: Mapping[str, ReliabilityHistogram]) -> list[dict[str, Any]]:
    """One row per region and bin of :data:`BIN_COLUMNS`."""
    rows = []
    for region, histogram in histograms.items():
        edges, mean, frequency = histogram.edges, histogram.mean_probability(), histogram.observed_frequency()
        for b in range(histogram.n_bins):
            rows.append({
                "region": region, "bin": b, "lower": float(edges[b]), "upper": float(edges[b + 1]),
                "count": int(histogram.count[b]), "sum_probability": float(histogram.sum_probability[b]),
                "sum_truth": float(histogram.sum_truth[b]), "sum_squared_error": float(histogram.sum_squared_error[b]),
                "mean_probability": float(mean[b]), "observed_frequency": float(frequency[b]),
            })
    return rows


def histograms_from_table(table: pd.DataFrame) -> dict[str, ReliabilityHistogram]:
    """The histograms of a reliability table (:func:`bin_rows`' columns; regions in the order they come)."""
    histograms = {}
    for region, rows in table.groupby("region", sort=False):
        rows = rows.sort_values("bin")
        if rows["bin"].tolist() != list(range(len(rows))):
            raise ValueError(f"region {region!r}: the reliability table's bins are not 0..{len(rows) - 1}")
        histograms[str(region)] = ReliabilityHistogram(
            rows["count"].to_numpy(np.int64),
            *(rows[column].to_numpy(np.float64) for column in ("sum_probability", "sum_truth", "sum_squared_error")))
    return histograms


def read_reliability_table(path: PathLike) -> dict[str, ReliabilityHistogram]:
    """A method's ``calibration.csv`` back as one histogram per region."""
    import pandas as pd

    return histograms_from_table(pd.read_csv(path))


def calibrate_method(subjects: Sequence[str], probability_paths: Sequence[PathLike],
                     truth_paths: Sequence[PathLike], mask_paths: Sequence[PathLike], scheme: LabelScheme,
                     bins_path: PathLike, summary_path: PathLike,
                     n_bins: int = N_BINS) -> dict[str, ReliabilityHistogram]:
    """The calibration rule's work: every labelled subject's exported probabilities, truth and brain mask (on its
    original grid), one subject at a time; the reliability table (:data:`BIN_COLUMNS`) and the summary
    (:data:`SUMMARY_COLUMNS`) written as CSV, atomically. Returns the histograms."""
    import logging

    import pandas as pd

    from lesionseg.inference.outputs import read_probabilities
    from lesionseg.io import atomic_path, read_image

    log = logging.getLogger(__name__)
    histograms = empty_histograms(scheme, n_bins)
    for subject, probability_path, truth_path, mask_path in zip(subjects, probability_paths, truth_paths,
                                                                mask_paths, strict=True):
        probabilities = read_probabilities(probability_path).data
        truth = read_image(truth_path, dtype=None).data
        brain = read_image(mask_path).data > GIVEN_MASK_THRESHOLD
        if probabilities.shape[1:] != truth.shape or brain.shape != truth.shape:
            raise ValueError(f"subject {subject}: probabilities {probability_path} {probabilities.shape[1:]}, truth "
                             f"{truth_path} {truth.shape} and brain mask {mask_path} {brain.shape} differ in shape; "
                             "re-run the export of this subject")
        add_subject(histograms, probabilities, truth, brain, scheme)
        del probabilities, truth, brain
    summary = calibration_summary(histograms, len(subjects))
    log.info("%d subjects; ECE per region: %s", len(subjects), {r["region"]: round(r["ece"], 4) for r in summary})
    with atomic_path(bins_path) as tmp:
        pd.DataFrame(bin_rows(histograms), columns=list(BIN_COLUMNS)).to_csv(tmp, index=False)
    with atomic_path(summary_path) as tmp:
        pd.DataFrame(summary, columns=list(SUMMARY_COLUMNS)).to_csv(tmp, index=False)
    return histograms
