"""Training settings per architecture family, declared once; the defaults follow the papers.

A model entry in the config (``models: {name: {architecture, parameters, training}}``)
overrides any of these keys; nested keys merge.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lesionseg.architectures import architecture_parameters
from lesionseg.config import ConfigError
from lesionseg.nnunet import ARCHITECTURE as NNUNET
from lesionseg.nnunet import INFERENCE_DEFAULTS as NNUNET_INFERENCE_DEFAULTS
from lesionseg.preprocessing.settings import deep_update

FAMILIES = {
    "deepmedic": "deepmedic",
    "deepmedic-residual": "deepmedic",
    "cascaded-deepmedic": "deepmedic",
    "twopathcnn": "havaei",
    "inputcascadecnn": "havaei",
    "localcascadecnn": "havaei",
    "mfcascadecnn": "havaei",
    "nnunet": "nnunet",
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
        "subjects_per_epoch": 50,
        "sampling": {"phase1": "foreground", "phase2": "natural"},
        "optimizer": {"name": "rmsprop", "lr": 1e-3, "rho": 0.9, "eps": 1e-4, "momentum": 0.6},
        "lr_halve_at": [12, 16, 19, 22, 25, 28, 31, 34],
        "l1": 1e-6,
        "l2": 1e-4,
        "augmentation": {"intensity_shift_std": 0.05, "intensity_scale_std": 0.01, "flip_probability": [0.5, 0.0, 0.0]},
        "phase2": {"epochs": 5, "lr": 1e-4},
        "validation_tile": "auto",
    },
    # Havaei et al. 2017: 33x33 patches (one output), SGD lr 0.005 decayed x0.1 per epoch,
    # momentum 0.5 ramped to 0.9, L1 + L2, equiprobable then natural sampling.
    "havaei": {
        "output_size": 1,
        "batch_size": 128,
        "epochs": 10,
        "batches_per_epoch": 200,
        "samples_per_subject": 2000,
        "subjects_per_epoch": 50,
        "sampling": {"phase1": "equiprobable", "phase2": "natural"},
        "optimizer": {"name": "sgd", "lr": 0.005, "lr_decay": 0.1, "momentum": 0.5, "momentum_final": 0.9},
        "lr_halve_at": [],
        "l1": 1e-6,
        "l2": 1e-4,
        "augmentation": {"intensity_shift_std": 0.0, "intensity_scale_std": 0.0, "flip_probability": [0.0, 0.0, 0.0]},
        "phase2": {"epochs": 3, "lr": 5e-4},
        "validation_tile": "auto",
    },
    # nnU-Net v2's trainer (Isensee et al. 2021): 1000 epochs of 250 iterations (a GPU budget), 50 validation
    # iterations, SGD from lr 0.01 with its poly schedule; the patch and batch sizes are its plans'. Data
    # augmentation in `augmentation_processes` worker processes (auto: none on the CPU, whose cores train the
    # network, else up to 12, nnU-Net's own choice for a GPU); compile: torch.compile (GPU runs of many epochs).
    "nnunet": {
        "epochs": 1000,
        "iterations_per_epoch": 250,
        "val_iterations_per_epoch": 50,
        "initial_lr": 0.01,
        "augmentation_processes": "auto",
        "compile": False,
    },
}


# validation_tile: the output side of the tiles the per-epoch validation is inferred in, or "auto" for the largest
# that fits the dense inference's default memory budget (dense = patch-wise: the side changes only the speed; small
# tiles spend most of their time on context, 29^3 outputs of 81^3 inputs in the paper's DeepMedic).

# Settings of every family: the seed of the batches and weights, the phases trained, and whether CUDA must run
# deterministic algorithms (exact resume and repeatable runs on a GPU, at some speed; the CPU is deterministic).
COMMON_DEFAULTS: dict[str, Any] = {"seed": 0, "phases": [1], "deterministic": False}


def family(architecture: str) -> str:
    try:
        return FAMILIES[architecture]
    except KeyError:
        raise ValueError(f"unknown architecture {architecture!r}; use one of {', '.join(FAMILIES)}") from None


def training_settings(architecture: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The training settings of a model: its family's defaults updated by ``overrides``."""
    settings = deep_update(TRAINING_DEFAULTS[family(architecture)], overrides or {})
    unknown = sorted(set(overrides or {}) - set(TRAINING_DEFAULTS[family(architecture)]) - set(COMMON_DEFAULTS))
    if unknown:
        known = sorted([*TRAINING_DEFAULTS[family(architecture)], *COMMON_DEFAULTS])
        raise ValueError(f"unknown training setting(s) {unknown}; known: {known}")
    for key, value in COMMON_DEFAULTS.items():
        settings.setdefault(key, value)
    tile = settings.get("validation_tile", "auto")
    if tile != "auto" and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 1):
        raise ValueError(f"validation_tile must be 'auto' or a positive number of output voxels, got {tile!r}")
    return settings


def sample_set_name(strategy: str | Mapping[str, Any]) -> str:
    """Name of the sample set a strategy is stored under in a subject's sample file."""
    if isinstance(strategy, str):
        return strategy
    digest = hashlib.sha256(json.dumps(strategy, sort_keys=True).encode()).hexdigest()[:8]
    return f"custom-{digest}"


def phase_strategy(settings: Mapping[str, Any], phase: int) -> str | Mapping[str, Any]:
    return settings["sampling"][f"phase{phase}"]


def phase_epochs(settings: Mapping[str, Any], phase: int) -> int:
    """Epochs of one training phase (phase 2 has its own count)."""
    return settings["phase2"]["epochs"] if phase == 2 else settings["epochs"]


def sampling_plan(model_settings: Sequence[Mapping[str, Any]]) -> dict[str, tuple[Any, int]]:
    """The sample sets a training subject needs for these models: set name -> (strategy, count)."""
    plan: dict[str, tuple[Any, int]] = {}
    for settings in model_settings:
        if "sampling" not in settings:  # nnU-Net samples its own patches
            continue
        for phase in settings["phases"]:
            strategy = phase_strategy(settings, phase)
            name = sample_set_name(strategy)
            count = max(settings["samples_per_subject"], plan.get(name, (None, 0))[1])
            plan[name] = (strategy, count)
    return dict(sorted(plan.items()))


# The first network a cascade of each architecture is built on.
CASCADE_FIRST = {
    "cascaded-deepmedic": "deepmedic",
    "inputcascadecnn": "twopathcnn",
    "localcascadecnn": "twopathcnn",
    "mfcascadecnn": "twopathcnn",
}


@dataclass(frozen=True)
class ModelSpec:
    """A model of the config, resolved: architecture, hyper-parameters and training settings."""

    name: str
    architecture: str
    parameters: dict[str, Any]
    training: dict[str, Any]
    first: str | None = None
    inference: dict[str, Any] = field(default_factory=dict)  # nnU-Net: mirroring, tile_step_size

    @property
    def is_nnunet(self) -> bool:
        return self.architecture == NNUNET

    @property
    def final_phase(self) -> int:
        return max(self.training["phases"])


NNUNET_KEYS = ("configuration", "planner", "plan", "inference")
"""Keys of an nnU-Net model's entry besides architecture and training."""


def nnunet_parameters(entry: Mapping[str, Any]) -> dict[str, Any]:
    """What an nnU-Net model is planned with: configuration, planner and the planner's size options."""
    from lesionseg.nnunet.planning import PLAN_OPTIONS, PLANNERS

    planner = entry.get("planner", "default")
    if planner not in PLANNERS:
        raise ValueError(f"unknown nnU-Net planner {planner!r}; use one of {', '.join(PLANNERS)}")
    unknown = sorted(set(entry.get("plan", {})) - set(PLAN_OPTIONS))
    if unknown:
        raise ValueError(f"unknown plan option(s) {unknown}; known: {sorted(PLAN_OPTIONS)}")
    return {"configuration": entry.get("configuration", "3d_fullres"), "planner": planner,
            "plan": {**PLAN_OPTIONS, **entry.get("plan", {})}}


def resolve_models(config: Mapping[str, Any]) -> dict[str, ModelSpec]:
    """Every model of a validated config, checked (a cascade names a trained first network of its kind)."""
    specs = {}
    for name, entry in config.get("models", {}).items():
        if "pretrained" in entry:  # imported from a model file: never trained here
            if entry.get("parameters") or entry.get("training"):
                raise ConfigError(f"model {name!r}: an imported (pretrained) model has its own parameters and "
                                  "training; remove 'parameters:' and 'training:'")
            continue
        architecture = entry["architecture"]
        nnunet_keys = sorted(set(entry) & set(NNUNET_KEYS))
        if architecture == NNUNET and entry.get("parameters"):
            raise ConfigError(f"model {name!r}: an nnU-Net model is sized by its plans; use 'planner:' and 'plan:' "
                              "instead of 'parameters:'")
        if architecture != NNUNET and nnunet_keys:
            raise ConfigError(f"model {name!r}: {nnunet_keys} are settings of nnU-Net models (architecture: nnunet)")
        try:
            if architecture == NNUNET:
                parameters = nnunet_parameters(entry)
            else:
                parameters = architecture_parameters(architecture, entry.get("parameters"))
            training = training_settings(architecture, entry.get("training"))
        except ValueError as err:
            raise ConfigError(f"model {name!r}: {err}") from None
        if not set(training["phases"]) <= {1, 2} or 1 not in training["phases"]:
            raise ConfigError(f"model {name!r}: phases must be [1] or [1, 2], got {training['phases']}")
        if architecture == NNUNET and training["phases"] != [1]:
            raise ConfigError(f"model {name!r}: nnU-Net trains in one phase; remove 'phases:'")
        first = entry.get("first")
        if (architecture in CASCADE_FIRST) != (first is not None):
            raise ConfigError(f"model {name!r}: 'first:' names the first network of a cascade, and only of one")
        inference = {**NNUNET_INFERENCE_DEFAULTS, **entry.get("inference", {})} if architecture == NNUNET else {}
        specs[name] = ModelSpec(name, architecture, parameters, training, first, inference)
    for spec in specs.values():
        if spec.first is not None:
            first = specs.get(spec.first)
            if first is None or first.architecture != CASCADE_FIRST[spec.architecture]:
                raise ConfigError(f"model {spec.name!r}: its first network {spec.first!r} must be a "
                                  f"{CASCADE_FIRST[spec.architecture]} model under 'models:'")
    imported = {name for name, entry in config.get("models", {}).items() if "pretrained" in entry}
    for dataset, entry in config["datasets"].items():
        for item in entry.get("models", []):
            name = item if isinstance(item, str) else item["model"]
            if name not in specs and name not in imported:
                raise ConfigError(f"dataset {dataset!r}: model {name!r} is not defined under 'models:'")
            if not isinstance(item, str):
                if name in imported:
                    raise ConfigError(f"dataset {dataset!r}: model {name!r} is imported from a file; list it by "
                                      "its name alone (it was trained_on nothing of this config)")
                continue
            if name in specs and specs[name].first and specs[name].first not in entry["models"]:
                raise ConfigError(f"dataset {dataset!r}: model {name!r} needs its first network "
                                  f"{specs[name].first!r} in the dataset's models too")
    return specs
