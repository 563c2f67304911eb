"""Centres of training samples, drawn per subject by a sampling strategy.

Drawing a set of ``n`` centres takes three steps:

1. the strategy and the subject's voxel counts per class inside the brain mask give
   a probability per class (:func:`~lesionseg.sampling.strategies.class_probabilities`);
2. each class gets the integer part of its expected count ``n * p``; the few samples
   left over (fewer than the number of classes) go to classes drawn from a
   multinomial over the fractional parts. Counts are unbiased (expectation exactly
   ``n * p``, so a class expected 0.3 times still gets a centre now and then) yet
   never more than the number of classes away from it, where a plain multinomial
   would stray by about ``sqrt(n p)``;
3. within each class, voxels are drawn uniformly: distinct voxels when the class has
   enough, with replacement when it has fewer voxels than samples.

Centres always lie inside the brain mask. Labelled voxels outside it are ignored:
the truth should lie inside the brain, and a patch centred outside it would teach
the network about skull or air the preprocessing removed. Centres may lie near the
edge of the volume; the patch extractor pads.

Each subject's sets use a generator seeded from ``(seed, subject, set name)`` alone
(:func:`subject_rng`), so a set does not change when other sets or subjects are
added, removed or reordered.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lesionseg.io import read_image
from lesionseg.labels import LabelScheme
from lesionseg.sampling.strategies import Strategy, class_probabilities, resolve_strategy

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class SampleSet:
    """One set of sample centres of one subject, and how it was drawn.

    ``centres``: int32 (N, 3) voxel indices (x, y, z) on the subject's preprocessed grid,
    in random order. ``classes``: uint8 (N,) class index at each centre.
    ``class_counts_in_brain``: int64 (n_classes,) voxels of each class inside the brain mask.
    ``samples_per_class``: int64 (n_classes,) centres on each class.
    ``strategy``: the strategy's name (see :func:`resolve_strategy`).
    ``probabilities``: float64 (n_classes,) probability of each class for this subject.
    """

    centres: np.ndarray
    classes: np.ndarray
    class_counts_in_brain: np.ndarray
    samples_per_class: np.ndarray
    strategy: str
    probabilities: np.ndarray

    def __len__(self) -> int:
        return len(self.centres)


def subject_rng(seed: int, subject: str, set_name: str) -> np.random.Generator:
    """A generator determined by ``(seed, subject, set_name)`` alone."""
    # JSON keeps the parts apart: ("a:b", "c") and ("a", "b:c") must not collide.
    digest = hashlib.sha256(json.dumps([seed, subject, set_name]).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "big"))


def samples_per_class(probabilities: np.ndarray, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """How many of ``n_samples`` centres go to each class, int64 (n_classes,) summing to ``n_samples``.

    Integer part of ``n_samples * probabilities`` plus a multinomial draw of the rest
    over the fractional parts (see the module docstring for why).
    """
    expected = n_samples * np.asarray(probabilities, dtype=float)
    counts = np.floor(expected).astype(np.int64)
    left_over = n_samples - int(counts.sum())
    if left_over > 0:
        fractions = expected - counts
        counts += rng.multinomial(left_over, fractions / fractions.sum())
    return counts


def sample_centres(
    classes: np.ndarray,
    brain_mask: np.ndarray,
    n_samples: int,
    strategy: Strategy,
    n_classes: int,
    rng: np.random.Generator,
) -> SampleSet:
    """Draw ``n_samples`` centres inside ``brain_mask`` by ``strategy``.

    ``classes``: integer (x, y, z) class indices in ``[0, n_classes)``;
    ``brain_mask``: (x, y, z), non-zero inside the brain. The result depends only on
    the inputs and the state of ``rng``.
    """
    classes = np.asarray(classes)
    mask = np.asarray(brain_mask).astype(bool, copy=False)
    if classes.ndim != 3 or classes.shape != mask.shape:
        raise ValueError(
            f"class map {classes.shape} and brain mask {mask.shape} must be 3D arrays of the same shape"
        )
    if not np.issubdtype(classes.dtype, np.integer):
        raise ValueError(f"class map must hold integer class indices, not {classes.dtype}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer) or n_samples < 0:
        raise ValueError(f"n_samples must be a non-negative integer, not {n_samples!r}")
    name, _ = resolve_strategy(strategy)
    if classes.size and (classes.min() < 0 or classes.max() >= n_classes):
        raise ValueError(
            f"class map holds values {classes.min()}..{classes.max()}, "
            f"outside the {n_classes} classes 0..{n_classes - 1}"
        )
    brain = np.flatnonzero(mask)
    if brain.size == 0:
        raise ValueError("the brain mask is empty: there is no voxel to centre a sample on")

    brain_classes = classes.ravel()[brain]
    counts = np.bincount(brain_classes, minlength=n_classes).astype(np.int64)
    probabilities = class_probabilities(strategy, counts)
    per_class = samples_per_class(probabilities, n_samples, rng)

    # Brain voxels grouped by class (a stable radix sort of small integers): class c
    # owns positions starts[c] : starts[c] + counts[c] of by_class.
    by_class = np.argsort(brain_classes, kind="stable")
    starts = np.cumsum(counts) - counts
    picks = [
        by_class[start + rng.choice(count, size=n_draws, replace=n_draws > count)]
        for start, count, n_draws in zip(starts, counts, per_class)
        if n_draws > 0  # a class with draws has voxels: absent classes have probability 0
    ]
    chosen = brain[np.concatenate(picks)] if picks else np.empty(0, dtype=np.intp)
    # Mixed rather than grouped by class, so a reader taking the first k gets the same mixture.
    chosen = rng.permutation(chosen)
    centres = np.stack(np.unravel_index(chosen, classes.shape), axis=1).astype(np.int32)
    return SampleSet(
        centres=centres,
        classes=classes.ravel()[chosen].astype(np.uint8),
        class_counts_in_brain=counts,
        samples_per_class=per_class,
        strategy=name,
        probabilities=probabilities,
    )


def _plan_entry(set_name: str, entry: Sequence[Any]) -> tuple[Strategy, int]:
    """``(strategy, n_samples)`` of a plan entry, checked before any image is read."""
    try:
        strategy, n_samples = entry
    except (TypeError, ValueError):
        raise ValueError(f"sample set {set_name!r}: expected (strategy, n_samples), got {entry!r}") from None
    resolve_strategy(strategy)
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer) or n_samples < 0:
        raise ValueError(f"sample set {set_name!r}: n_samples must be a non-negative integer, not {n_samples!r}")
    return strategy, int(n_samples)


def sample_subject(
    label_path: str | os.PathLike,
    mask_path: str | os.PathLike,
    scheme: LabelScheme,
    plan: Mapping[str, tuple[Strategy, int]],
    seed: int,
    subject: str,
) -> dict[str, SampleSet]:
    """Draw every set of ``plan`` (set name -> (strategy, n_samples)) for one subject.

    ``label_path``: raw label map (values of ``scheme``); ``mask_path``: brain mask,
    non-zero inside, on the same grid. Each set uses :func:`subject_rng` of
    ``(seed, subject, set name)``. A subject with no foreground inside the mask is
    sampled on background only (with a warning).
    """
    entries = {name: _plan_entry(name, entry) for name, entry in plan.items()}
    label = read_image(label_path, dtype=None)
    mask = read_image(mask_path, dtype=None)
    if label.data.shape != mask.data.shape or not np.allclose(label.affine, mask.affine, atol=1e-3):
        raise ValueError(
            f"{label_path} (shape {label.data.shape}) and {mask_path} (shape {mask.data.shape}) are not on one grid"
        )
    brain = mask.data > 0
    if not brain.any():
        raise ValueError(f"{mask_path}: the brain mask is empty, so subject {subject!r} has no voxel to sample")
    classes = scheme.to_classes(label.data)
    if not classes[brain].any():
        log.warning("%s: no foreground inside the brain mask; every sample will be background", subject)
    outside = int(np.count_nonzero(classes[~brain]))
    if outside:
        log.warning("%s: %d labelled voxels lie outside the brain mask and are never sampled", subject, outside)
    return {
        name: sample_centres(classes, brain, n_samples, strategy, scheme.n_classes, subject_rng(seed, subject, name))
        for name, (strategy, n_samples) in entries.items()
    }


def describe(sample_set: SampleSet, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Plain-data summary for logs and JSON: per class, voxels in the brain, probability, samples.

    Classes are keyed by ``class_names`` (e.g. ``scheme.class_names``) or by index.
    """
    n_classes = len(sample_set.class_counts_in_brain)
    names = list(class_names) if class_names is not None else [str(i) for i in range(n_classes)]
    if len(names) != n_classes:
        raise ValueError(f"{len(names)} class names for {n_classes} classes")
    return {
        "strategy": sample_set.strategy,
        "n_samples": len(sample_set),
        "classes": {
            name: {
                "voxels_in_brain": int(sample_set.class_counts_in_brain[i]),
                "probability": float(sample_set.probabilities[i]),
                "samples": int(sample_set.samples_per_class[i]),
            }
            for i, name in enumerate(names)
        },
    }
