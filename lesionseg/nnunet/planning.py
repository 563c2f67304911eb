"""nnU-Net's experiment planning and preprocessing of one exported dataset, with its own code.

``nnUNetv2_plan_and_preprocess -c CONFIGURATION --verify_dataset_integrity`` through its Python API: the dataset's
integrity check, its fingerprint, the plans of the chosen planner and the preprocessing of the chosen
configuration. The planner's size options (``plan:`` of the model) are set by subclassing the planner, as nnU-Net's
own planner variants do: the GPU memory the plans target (smaller: smaller patches), the features of the first
stage and the most any stage has. The pipeline's folds go beside the plans as ``splits_final.json``.

nnU-Net starts its worker processes with ``spawn``: a script calling this needs the ``__main__`` guard.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lesionseg.io import atomic_path
from lesionseg.nnunet import nnunet_environment
from lesionseg.nnunet.layout import DATASET_ID, DATASET_NAME

log = logging.getLogger(__name__)

PLANNERS = {
    "default": ("nnunetv2.experiment_planning.experiment_planners.default_experiment_planner", "ExperimentPlanner"),
    "resenc-m": ("nnunetv2.experiment_planning.experiment_planners.residual_unets.residual_encoder_unet_planners",
                 "nnUNetPlannerResEncM"),
    "resenc-l": ("nnunetv2.experiment_planning.experiment_planners.residual_unets.residual_encoder_unet_planners",
                 "nnUNetPlannerResEncL"),
}
"""``planner:`` of a model -> nnU-Net's planner class: the original U-Net, or the residual-encoder U-Nets of
nnU-Net's 2024 recommendations (M: about 9-11 GB of GPU memory, L: about 24 GB)."""

PLAN_OPTIONS = {"gpu_memory_gb": None, "base_features": None, "max_features": None}
"""``plan:`` of a model (None: the planner's own): the GPU memory the plans target in GB, the feature maps of the
first stage, the most of any stage."""


def planner_class(planner: str, plan: Mapping[str, Any]) -> type:
    """nnU-Net's planner class for ``planner:``, subclassed when ``plan:`` changes its feature counts."""
    import importlib

    if planner not in PLANNERS:
        raise ValueError(f"unknown nnU-Net planner {planner!r}; use one of {', '.join(PLANNERS)}")
    module, name = PLANNERS[planner]
    base = getattr(importlib.import_module(module), name)
    base_features, max_features = plan.get("base_features"), plan.get("max_features")
    if base_features is None and max_features is None:
        return base

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        base.__init__(self, *args, **kwargs)
        if base_features is not None:
            self.UNet_base_num_features = int(base_features)
        if max_features is not None:
            self.UNet_max_features_3d = self.UNet_max_features_2d = int(max_features)

    return type(f"{name}_lesionseg", (base,), {"__init__": __init__})


def plan_and_preprocess(raw: Path, preprocessed: Path, planner: str, plan: Mapping[str, Any], configuration: str,
                        splits: Sequence[Mapping[str, Sequence[str]]], processes: int = 1) -> dict[str, Any]:
    """Check, fingerprint, plan and preprocess the raw dataset under ``raw`` into ``preprocessed`` (nnU-Net's
    folders), and write the folds as ``splits_final.json``; returns the plans."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprint_dataset,
                                                                      plan_experiment_dataset, preprocess_dataset)

    if preprocessed.exists():  # a killed run's leftovers: nnU-Net would mix them with this run's
        shutil.rmtree(preprocessed)
    # The planner sets torch's threads to the augmentation processes while it sizes networks: never 0.
    with nnunet_environment(raw=raw, preprocessed=preprocessed, processes=processes, augmentation_processes=processes):
        log.info("nnU-Net: dataset integrity and fingerprint of %s", raw / DATASET_NAME)
        extract_fingerprint_dataset(DATASET_ID, num_processes=processes, check_dataset_integrity=True, clean=True,
                                    verbose=False, show_progress_bar=False)
        planner_type = planner_class(planner, plan)
        gpu_memory = plan.get("gpu_memory_gb")
        _, plans_identifier = plan_experiment_dataset(DATASET_ID, planner_type, gpu_memory_target_in_gb=gpu_memory)
        dataset_folder = preprocessed / DATASET_NAME
        plans = json.loads((dataset_folder / f"{plans_identifier}.json").read_text())
        if configuration not in plans["configurations"]:
            raise ValueError(f"nnU-Net planned no {configuration!r} configuration for this dataset (it planned "
                             f"{sorted(plans['configurations'])}); choose one of those")
        log.info("nnU-Net plans %s, %s: %s", plans_identifier, configuration,
                 {k: plans["configurations"][configuration].get(k) for k in ("patch_size", "batch_size", "spacing")})
        preprocess_dataset(DATASET_ID, plans_identifier, [configuration], [processes], verbose=False,
                           show_progress_bar=False)
    with atomic_path(dataset_folder / "splits_final.json") as tmp:
        tmp.write_text(json.dumps([{k: list(v) for k, v in fold.items()} for fold in splits], indent=2))
    return plans


def plans_file(preprocessed: Path) -> Path:
    """The plans of a preprocessed folder (one planner per folder)."""
    found = sorted((preprocessed / DATASET_NAME).glob("nnUNet*Plans.json"))
    if len(found) != 1:
        raise FileNotFoundError(f"{preprocessed / DATASET_NAME}: expected one nnU-Net plans file, found "
                                f"{[p.name for p in found]}; re-run the planning")
    return found[0]
