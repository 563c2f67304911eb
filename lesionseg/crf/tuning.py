"""Random search of the CRF's parameters on validation subjects (as Kamnitsas et al. tuned theirs).

Trial 0 is the configured parameters, so the search never returns something
worse on the validation subjects than what it started from. Weights and sigmas
are drawn log-uniformly from :data:`SEARCH_RANGES`; positional sigmas are
isotropic, intensity sigmas are drawn per modality.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from lesionseg.crf.meanfield import CRFParameters, dense_crf
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


def sample_parameters(rng: np.random.Generator, base: CRFParameters, n_modalities: int) -> CRFParameters:
    """A random draw: every searched parameter from its range, the others (iterations, range) from ``base``."""
    dims = len(base.smoothness_sigma_mm)

    def draw(name: str) -> float:
        return round(float(_log_uniform(rng, *SEARCH_RANGES[name])), 3)

    return replace(
        base,
        smoothness_weight=draw("smoothness_weight"),
        smoothness_sigma_mm=(draw("smoothness_sigma_mm"),) * dims,
        appearance_weight=draw("appearance_weight"),
        appearance_sigma_mm=(draw("appearance_sigma_mm"),) * dims,
        intensity_sigma=tuple(round(float(s), 3)
                              for s in _log_uniform(rng, *SEARCH_RANGES["intensity_sigma"], n_modalities)),
    )


def mean_dice(cases: Sequence[ValidationCase], scheme: LabelScheme, parameters: CRFParameters | None,
              device: torch.device | str | None = None) -> float:
    """Mean over cases and regions of the Dice of the CRF's segmentation (of the network's with ``None``), the CRF
    computed on ``device`` (default: the CPU)."""
    scores = []
    for case in cases:
        try:
            probabilities = case.probabilities if parameters is None else dense_crf(
                case.probabilities, case.images, case.spacing, parameters, mask=case.mask, device=device)
        except ValueError as err:
            raise ValueError(f"validation subject {case.name}: {err}") from err
        prediction = scheme.to_raw(probabilities.argmax(axis=0))
        scores += list(region_dice(prediction, case.truth, scheme).values())
    return float(np.mean(scores))


def tune_crf(cases: Sequence[ValidationCase], scheme: LabelScheme, base: CRFParameters, trials: int,
             seed: int, device: torch.device | str | None = None) -> tuple[CRFParameters, list[dict[str, Any]]]:
    """The best of ``trials`` parameter sets by mean validation Dice, and one row per trial (first row: no CRF);
    the CRF runs on ``device`` (default: the CPU)."""
    if not cases:
        raise ValueError("CRF tuning needs at least one labelled validation subject: adjust the dataset's 'split:' "
                         "or set crf: {tune: {enabled: false}}")
    rng = np.random.default_rng(seed)
    n_modalities = cases[0].images.shape[0]
    rows: list[dict[str, Any]] = [{"trial": "network", "mean_dice": mean_dice(cases, scheme, None)}]
    best, best_score = base, -np.inf
    for trial in tqdm(range(trials), desc="CRF parameter search", unit="trial"):
        parameters = base if trial == 0 else sample_parameters(rng, base, n_modalities)
        score = mean_dice(cases, scheme, parameters, device)
        rows.append({"trial": trial, "mean_dice": score, **parameters.to_mapping()})
        log.info("trial %d: mean Dice %.4f with %s", trial, score, parameters)
        if score > best_score:
            best, best_score = parameters, score
    log.info("best mean Dice %.4f (network alone %.4f): %s", best_score, rows[0]["mean_dice"], best)
    return best, rows
