"""Training settings per architecture family, declared once; the defaults follow the papers.

A model entry in the config (``models: {name: {architecture, parameters, training}}``)
overrides any of these keys; nested keys merge.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lesionseg.preprocessing.settings import deep_update

FAMILIES = {
    "deepmedic": "deepmedic",
    "deepmedic-residual": "deepmedic",
    "cascaded-deepmedic": "deepmedic",
    "twopathcnn": "havaei",
    "inputcascadecnn": "havaei",
    "localcascadecnn": "havaei",
    "mfcascadecnn": "havaei",
}

TRAINING_DEFAULTS: dict[str, dict[str, Any]] = {
    # Kamnitsas et al. 2017: 25^3 segments (9^3 outputs), batch 10, fg/bg 50/50,
    # RMSProp with Nesterov momentum, lr halved on a schedule, L1 + L2, intensity and flip augmentation.
    "deepmedic": {
        "output_size": 9,
        "batch_size": 10,
        "epochs": 35,
        "batches_per_epoch": 200,
        "samples_per_subject": 1000,
        "sampling": {"phase1": "foreground", "phase2": "natural"},
        "optimizer": {"name": "rmsprop", "lr": 1e-3, "rho": 0.9, "eps": 1e-4, "momentum": 0.6},
        "lr_halve_at": [12, 16, 19, 22, 25, 28, 31, 34],
        "l1": 1e-6,
        "l2": 1e-4,
        "augmentation": {"intensity_shift_std": 0.05, "intensity_scale_std": 0.01, "flip_probability": [0.5, 0.0, 0.0]},
        "phase2": {"epochs": 5, "lr": 1e-4},
        "validation_tile": 29,
    },
    # Havaei et al. 2017: 33x33 patches (one output), SGD lr 0.005 decayed x0.1 per epoch,
    # momentum 0.5 ramped to 0.9, L1 + L2, equiprobable then natural sampling.
    "havaei": {
        "output_size": 1,
        "batch_size": 128,
        "epochs": 10,
        "batches_per_epoch": 200,
        "samples_per_subject": 2000,
        "sampling": {"phase1": "equiprobable", "phase2": "natural"},
        "optimizer": {"name": "sgd", "lr": 0.005, "lr_decay": 0.1, "momentum": 0.5, "momentum_final": 0.9},
        "lr_halve_at": [],
        "l1": 1e-6,
        "l2": 1e-4,
        "augmentation": {"intensity_shift_std": 0.0, "intensity_scale_std": 0.0, "flip_probability": [0.0, 0.0, 0.0]},
        "phase2": {"epochs": 3, "lr": 5e-4},
        "validation_tile": 29,
    },
}


def family(architecture: str) -> str:
    try:
        return FAMILIES[architecture]
    except KeyError:
        raise ValueError(f"unknown architecture {architecture!r}; use one of {', '.join(FAMILIES)}") from None


def training_settings(architecture: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The training settings of a model: its family's defaults updated by ``overrides``."""
    settings = deep_update(TRAINING_DEFAULTS[family(architecture)], overrides or {})
    unknown = sorted(set(overrides or {}) - set(TRAINING_DEFAULTS[family(architecture)]) - {"seed", "phases"})
    if unknown:
        raise ValueError(f"unknown training setting(s) {unknown}; known: {sorted(TRAINING_DEFAULTS['deepmedic'])}")
    settings.setdefault("seed", 0)
    settings.setdefault("phases", [1])
    return settings
