"""Random search of the CRF's parameters on validation subjects (as Kamnitsas et al. tuned theirs).

Trial 0 is the configured parameters, so the search never returns something
worse on the validation subjects than what it started from. Weights and sigmas
are drawn log-uniformly from :data:`SEARCH_RANGES`; positional sigmas are
isotropic, intensity sigmas are drawn per modality. Only the sigmas shape the
kernels (the lattices, the expensive part of a trial), so each draw may be
followed by more draws of the weights alone, on the same kernels
(``weights_per_sigma_draw``). With one (the default) every trial draws
everything, and the search is Kamnitsas et al.'s.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from lesionseg.crf.meanfield import CRFParameters, MeanFieldCRF
from lesionseg.evaluation.metrics import region_dice
from lesionseg.labels import LabelScheme

log = logging.getLogger(__name__)

# Ranges of the random search (weights, sigmas in mm, intensity sigmas on the 0..255 scale).
SEARCH_RANGES: dict[str, tuple[float, float]] = {
    "smoothness_weight": (0.5, 8.0),
    "smoothness_sigma_mm": (1.0, 8.0),
    "appearance_weight": (0.5, 10.0),
    "appearance_sigma_mm": (2.0, 20.0),
    "intensity_sigma": (1.0, 30.0),
}


@dataclass(frozen=True)
class ValidationCase:
    """One validation subject on the preprocessing grid."""

    name: str
    probabilities: np.ndarray  # (class, x, y, z), the network's
    images: np.ndarray  # (modality, x, y, z), normalised
    truth: np.ndarray  # raw label values
    mask: np.ndarray  # brain
    spacing: tuple[float, ...]


def _log_uniform(rng: np.random.Generator, low: float, high: float, size: int | None = None) -> Any:
    return np.exp(rng.uniform(np.log(low), np.log(high), size))


def _draw(rng: np.random.Generator, name: str) -> float:
    return round(float(_log_uniform(rng, *SEARCH_RANGES[name])), 3)


def sample_parameters(rng: np.random.Generator, base: CRFParameters, n_modalities: int) -> CRFParameters:
    """A random draw: every searched parameter from its range, the others (iterations, range) from ``base``."""
    dims = len(base.smoothness_sigma_mm)
    return replace(
        base,
        smoothness_weight=_draw(rng, "smoothness_weight"),
        smoothness_sigma_mm=(_draw(rng, "smoothness_sigma_mm"),) * dims,
        appearance_weight=_draw(rng, "appearance_weight"),
        appearance_sigma_mm=(_draw(rng, "appearance_sigma_mm"),) * dims,
        intensity_sigma=tuple(round(float(s), 3)
                              for s in _log_uniform(rng, *SEARCH_RANGES["intensity_sigma"], n_modalities)),
    )


def sample_weights(rng: np.random.Generator, base: CRFParameters) -> CRFParameters:
    """``base`` with both weights drawn from their ranges."""
    return replace(base, smoothness_weight=_draw(rng, "smoothness_weight"),
                   appearance_weight=_draw(rng, "appearance_weight"))


def search_trials(rng: np.random.Generator, base: CRFParameters, trials: int, n_modalities: int,
                  weights_per_sigma_draw: int = 1) -> list[list[CRFParameters]]:
    """The ``trials`` parameter sets in trial order, grouped by their sigmas: ``[base]``, then groups of a full
    draw followed by ``weights_per_sigma_draw - 1`` draws of its weights (the last group may be short). With one,
    every trial is a full draw."""
    if weights_per_sigma_draw < 1:
        raise ValueError(f"weights_per_sigma_draw must be at least 1, got {weights_per_sigma_draw}")
    groups = [[base]] if trials > 0 else []
    remaining = trials - 1
    while remaining > 0:
        group = [sample_parameters(rng, base, n_modalities)]
        group += [sample_weights(rng, group[0]) for _ in range(min(weights_per_sigma_draw, remaining) - 1)]
        groups.append(group)
        remaining -= len(group)
    return groups


def _case_dice(case: ValidationCase, scheme: LabelScheme, probabilities: np.ndarray) -> list[float]:
    prediction = scheme.to_raw(probabilities.argmax(axis=0))
    return list(region_dice(prediction, case.truth, scheme).values())


def group_dice(cases: Sequence[ValidationCase], scheme: LabelScheme, group: Sequence[CRFParameters],
               device: torch.device | str | None = None) -> list[float]:
    """Mean over cases and regions of the Dice of the CRF's segmentation for each parameter set of ``group`` (all
    with the same sigmas: one set of kernels per case), the CRF computed on ``device`` (default: the CPU)."""
    scores: list[list[float]] = [[] for _ in group]
    for case in cases:
        try:
            crf = MeanFieldCRF(case.probabilities, case.images, case.spacing, group[0], mask=case.mask,
                               device=device)
            for trial_scores, parameters in zip(scores, group, strict=True):
                trial_scores += _case_dice(case, scheme, crf.marginals(parameters))
        except ValueError as err:
            raise ValueError(f"validation subject {case.name}: {err}") from err
        del crf  # its lattices, before the next subject's
    return [float(np.mean(s)) for s in scores]


def tune_crf(cases: Sequence[ValidationCase], scheme: LabelScheme, base: CRFParameters, trials: int,
             seed: int, device: torch.device | str | None = None, weights_per_sigma_draw: int = 1
             ) -> tuple[CRFParameters, list[dict[str, Any]]]:
    """The best of ``trials`` parameter sets by mean validation Dice, and one row per trial (first row: no CRF);
    the CRF runs on ``device`` (default: the CPU); each draw of the sigmas is tried with
    ``weights_per_sigma_draw`` draws of the weights (:func:`search_trials`)."""
    if not cases:
        raise ValueError("CRF tuning needs at least one labelled validation subject: adjust the dataset's 'split:' "
                         "or set crf: {tune: {enabled: false}}")
    rng = np.random.default_rng(seed)
    groups = search_trials(rng, base, trials, cases[0].images.shape[0], weights_per_sigma_draw)
    network = float(np.mean([s for case in cases for s in _case_dice(case, scheme, case.probabilities)]))
    rows: list[dict[str, Any]] = [{"trial": "network", "mean_dice": network}]
    best, best_score = base, -np.inf
    with tqdm(total=trials, desc="CRF parameter search", unit="trial") as progress:
        for group in groups:
            for parameters, score in zip(group, group_dice(cases, scheme, group, device), strict=True):
                trial = len(rows) - 1
                rows.append({"trial": trial, "mean_dice": score, **parameters.to_mapping()})
                log.info("trial %d: mean Dice %.4f with %s", trial, score, parameters)
                if score > best_score:
                    best, best_score = parameters, score
            progress.update(len(group))
    log.info("best mean Dice %.4f (network alone %.4f): %s", best_score, network, best)
    return best, rows
