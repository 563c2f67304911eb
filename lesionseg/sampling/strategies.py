"""Sampling strategies: how the centres of training patches are shared among classes.

A strategy is data. It is either a preset name from :data:`SAMPLING_STRATEGIES` or an
explicit mapping, in one of two forms:

- ``{"background_share": b, "share_by": s}``: with ``b`` null, all classes share the
  samples; with ``b`` in [0, 1], background (class 0) gets ``b`` and the foreground
  classes (all others) share ``1 - b``. ``s`` says how a share is divided among the
  classes it covers: ``"equal"`` (each present class alike) or ``"voxel_count"`` (in
  proportion to its voxels inside the brain mask).
- ``{"class_weights": [w0, w1, ...]}``: one non-negative weight per class index.

:func:`class_probabilities` resolves a strategy against one subject's voxel counts.
Classes absent from the subject get probability 0 and the others share their weight
in proportion, so a subject missing, say, enhancing tumour is still sampled by the
same rule over what it has. A healthy subject (no foreground) is sampled on
background only whatever the strategy.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SHARE_BY = ("equal", "voxel_count")

SAMPLING_STRATEGIES: dict[str, dict[str, Any]] = {
    # Havaei et al. 2017, phase 1: every class present in the subject equally likely.
    "equiprobable": {"background_share": None, "share_by": "equal"},
    # Kamnitsas et al. 2017 (DeepMedic): half the segments on background, half on
    # foreground, the foreground classes in proportion to their voxel counts.
    "foreground": {"background_share": 0.5, "share_by": "voxel_count"},
    # Havaei et al. 2017, phase 2: uniform over brain voxels, i.e. the true label distribution.
    "natural": {"background_share": None, "share_by": "voxel_count"},
}

Strategy = str | Mapping[str, Any]


def _strategy_error(problem: str) -> ValueError:
    return ValueError(
        f"{problem}; a sampling strategy is one of {', '.join(SAMPLING_STRATEGIES)}, "
        "{'class_weights': [w0, w1, ...]} or {'background_share': null or 0..1, "
        f"'share_by': {' or '.join(SHARE_BY)}}}"
    )


def resolve_strategy(strategy: Strategy) -> tuple[str, dict[str, Any]]:
    """The name and specification of a strategy; raises ValueError on an invalid one.

    A preset is named by its key; an explicit mapping by its canonical JSON text, so
    a sample file records exactly what was asked (``json.loads`` of the name gives the
    specification back).
    """
    if isinstance(strategy, str):
        if strategy not in SAMPLING_STRATEGIES:
            raise _strategy_error(f"unknown sampling strategy {strategy!r}")
        return strategy, dict(SAMPLING_STRATEGIES[strategy])
    if not isinstance(strategy, Mapping):
        raise _strategy_error(f"sampling strategy {strategy!r} is neither a name nor a mapping")
    spec = dict(strategy)
    if set(spec) == {"class_weights"}:
        try:
            weights = np.asarray(spec["class_weights"], dtype=float)
        except (TypeError, ValueError):
            raise _strategy_error(f"class_weights {spec['class_weights']!r} are not numbers") from None
        if weights.ndim != 1 or not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
            raise _strategy_error(
                f"class_weights {spec['class_weights']!r} must be a list of non-negative numbers, not all 0"
            )
        spec = {"class_weights": weights.tolist()}
    elif set(spec) == {"background_share", "share_by"}:
        share = spec["background_share"]
        if share is not None and (isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1):
            raise _strategy_error(f"background_share {share!r} must be null or a number in [0, 1]")
        if spec["share_by"] not in SHARE_BY:
            raise _strategy_error(f"share_by {spec['share_by']!r} is not one of {', '.join(SHARE_BY)}")
    else:
        raise _strategy_error(f"sampling strategy {spec!r} has unexpected keys {sorted(spec)}")
    return json.dumps(spec, sort_keys=True), spec


def _strategy_weights(spec: Mapping[str, Any], counts: np.ndarray) -> np.ndarray:
    """Unnormalised weight of each class, float64 (n_classes,), before absent classes are dropped."""
    if "class_weights" in spec:
        weights = np.asarray(spec["class_weights"], dtype=float)
        if weights.size != counts.size:
            raise ValueError(f"class_weights has {weights.size} entries but the label scheme has {counts.size} classes")
        return weights
    present = (counts > 0).astype(float)
    per_class = present if spec["share_by"] == "equal" else counts.astype(float)
    share = spec["background_share"]
    if share is None:
        return per_class
    weights = np.zeros(counts.size)
    weights[0] = share
    foreground_total = per_class[1:].sum()
    if foreground_total > 0:
        weights[1:] = (1.0 - share) * per_class[1:] / foreground_total
    return weights


def class_probabilities(strategy: Strategy, class_counts: np.ndarray) -> np.ndarray:
    """Probability that a sample is centred on each class, float64 (n_classes,), summing to 1.

    ``class_counts``: int (n_classes,), voxels of each class inside the brain mask.
    Absent classes get 0 and the others renormalise. When the strategy gives no
    weight to any present class (``class_weights`` of 0 on background for a healthy
    subject), the present classes are sampled equally, with a warning, rather than
    failing the subject.
    """
    name, spec = resolve_strategy(strategy)
    counts = np.asarray(class_counts)
    if counts.ndim != 1 or counts.size == 0 or not np.issubdtype(counts.dtype, np.integer) or np.any(counts < 0):
        raise ValueError(f"class counts must be non-negative integers, one per class; got {counts!r}")
    present = counts > 0
    if not present.any():
        raise ValueError("every class count is 0: there is no voxel to sample")
    weights = _strategy_weights(spec, counts) * present
    if weights.sum() <= 0:
        log.warning(
            "sampling strategy %s gives no weight to the classes present (%s); sampling them equally",
            name,
            np.flatnonzero(present).tolist(),
        )
        weights = present.astype(float)
    return weights / weights.sum()
