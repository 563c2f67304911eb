"""Voxel-wise uncertainty of a method's probabilities: the entropy of the mean prediction, and the disagreement
between the predictions that were averaged (mutual information).

A network's probabilities are the mean of several predictions where it has them: the k fold models of a
cross-validation, an ensemble's members, and the mirrored copies of the image of test-time mirroring
(``inference: mirror_axes``). Following the decomposition used for ensembles and test-time augmentation in
brain tumour segmentation (Jungo & Reyes 2019; Mehrtash et al. 2020), with ``p_m`` those predictions and ``p``
their mean:

- the **entropy** ``H(p)`` is the total uncertainty of the averaged prediction;
- the **mutual information** ``H(p) - mean_m H(p_m)`` is the part due to the predictions disagreeing
  (0 where all agree, and 0 everywhere for a single prediction).

Both are divided by ``log(n_classes)``, so that they lie in [0, 1] for any label scheme: 1 is a uniform
prediction (entropy) or predictions as far apart as they can be (mutual information).

Averages compose: an ensemble of members that were themselves averages keeps the disagreement of every
prediction below it, since a member's mean entropy is its entropy minus its mutual information
(:meth:`MeanPrediction.add` with ``mutual_information``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import numpy as np

_TINY = 1e-12


def normalised_entropy(probabilities: np.ndarray) -> np.ndarray:
    """Entropy over the classes of ``(class, x, y, z)`` probabilities, divided by ``log(n_classes)``: ``(x, y, z)``
    float32 in [0, 1]."""
    n_classes = probabilities.shape[0]
    if n_classes < 2:
        raise ValueError(f"entropy needs at least two classes, the map has {n_classes}")
    entropy = np.zeros(probabilities.shape[1:], dtype=np.float64)
    for p in probabilities:  # class by class: one (x, y, z) temporary, not a second (class, x, y, z) array
        p = np.asarray(p, dtype=np.float64)
        entropy -= p * np.log(np.clip(p, _TINY, 1.0))
    return np.clip(entropy / np.log(n_classes), 0.0, 1.0).astype(np.float32)


class MeanPrediction:
    """Running mean of predictions ``(class, x, y, z)`` and of their entropies, for the mean probabilities and the
    mutual information between the predictions without holding them all."""

    def __init__(self) -> None:
        self._sum: np.ndarray | None = None
        self._entropy_sum: np.ndarray | None = None
        self.count = 0

    def add(self, probabilities: np.ndarray, mutual_information: np.ndarray | None = None) -> None:
        """Add one prediction; ``mutual_information``: the disagreement inside it, when it is itself a mean (its
        predictions' mean entropy is then its entropy minus that)."""
        if self._sum is not None and probabilities.shape != self._sum.shape:
            raise ValueError(f"a prediction of shape {probabilities.shape} cannot be averaged with "
                             f"{self._sum.shape}")
        mean_entropy = normalised_entropy(probabilities).astype(np.float64)
        if mutual_information is not None:
            mean_entropy -= mutual_information
        if self._sum is None:
            self._sum = probabilities.astype(np.float64)
            self._entropy_sum = mean_entropy
        else:
            self._sum += probabilities
            self._entropy_sum += mean_entropy
        self.count += 1

    def mean(self) -> np.ndarray:
        """The mean probabilities, float32."""
        if self._sum is None:
            raise ValueError("no prediction was added")
        return (self._sum / self.count).astype(np.float32)

    def mutual_information(self) -> np.ndarray:
        """``H(mean) - mean H(prediction)`` (normalised, float32, in [0, 1]); zeros for one prediction."""
        mean_entropy = self._entropy_sum / self.count
        return np.clip(normalised_entropy(self.mean()) - mean_entropy, 0.0, 1.0).astype(np.float32)


def mirror_flips(axes: Iterable[int]) -> list[tuple[int, ...]]:
    """Every combination of flips along ``axes`` (spatial axes 0-2), the unflipped image first: 2^len(axes)
    predictions, as nnU-Net's test-time mirroring."""
    axes = sorted(set(int(a) for a in axes))
    if any(a not in (0, 1, 2) for a in axes):
        raise ValueError(f"mirror axes are spatial axes 0, 1 and 2, not {axes}")
    return [combo for size in range(len(axes) + 1) for combo in itertools.combinations(axes, size)]


def flip_spatial(array: np.ndarray, flips: Sequence[int], channels_first: bool = True) -> np.ndarray:
    """``array`` flipped along the spatial axes ``flips`` (after a leading channel axis when ``channels_first``),
    contiguous."""
    if not flips:
        return array
    offset = 1 if channels_first else 0
    return np.ascontiguousarray(np.flip(array, axis=tuple(offset + a for a in flips)))
