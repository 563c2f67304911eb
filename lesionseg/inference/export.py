"""A dataset's trained network as one model file (``lesionseg export-model``).

The file holds the network's weights (every member of an ensemble, every fold's
model with cross-validation), its classes, modalities, full preprocessing
settings, the CRF parameters it is used with and its provenance; see
:mod:`lesionseg.training.checkpoints` for the layout.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from lesionseg.config import ConfigError
from lesionseg.inference.methods import (APPLIED_SEPARATOR, CRF_SUFFIX, FOLDS, dataset_networks, fold_count,
                                        pretrained_models)
from lesionseg.training.settings import resolve_models

log = logging.getLogger(__name__)


def final_model_file(results: Path, dataset: str, model: str, final_phase: int) -> Path:
    """The workflow's model file of a model's last training phase (``model``: ``name`` or ``name/fold2``)."""
    return results / dataset / "models" / model / f"phase{final_phase}" / "model.pt"


def model_files_of(config: Mapping[str, Any], dataset: str, network: str, results: Path = Path("results"),
                   fold: int | None = None) -> list[Path]:
    """The model files whose mean gives a (non-ensemble) network's probabilities on a dataset: an imported
    file; the model trained here or on another dataset; with cross-validation, the model of ``fold`` (the
    subject's, for out-of-fold results) or, without ``fold``, those of every fold."""
    chosen = dataset_networks(config, dataset)[network]
    if chosen.trained_on is None:
        return [Path(pretrained_models(config)[chosen.model])]
    source, final_phase = chosen.trained_on, resolve_models(config)[chosen.model].final_phase
    k = fold_count(config, source)
    if not k:
        return [final_model_file(results, source, chosen.model, final_phase)]
    folds = [fold] if fold is not None and not chosen.folds and source == dataset else range(k)
    return [final_model_file(results, source, f"{chosen.model}/fold{f}", final_phase) for f in folds]


def network_model_files(config: Mapping[str, Any], dataset: str, network: str, results: Path) -> list[Path]:
    """The model files of a network trained on a dataset, as a whole (an ensemble's members; every fold's)."""
    networks = dataset_networks(config, dataset)
    if network not in networks:
        raise ConfigError(f"dataset {dataset!r} has no network {network!r} (it has {sorted(networks)})")
    chosen = networks[network]
    if chosen.trained_on != dataset:
        where = f"trained on {chosen.trained_on!r}" if chosen.trained_on else "imported from a model file"
        raise ConfigError(f"{network!r} of dataset {dataset!r} is {where}; export it from there")
    files = [f for member in (chosen.members or (network,)) for f in model_files_of(config, dataset, member, results)]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise ConfigError(f"{network!r} of dataset {dataset!r} is not trained yet ({missing[0]} is missing); run the "
                          f"workflow first, e.g. snakemake --cores N {missing[0]}")
    return files


def fitted_quality_models(results: Path, dataset: str, network: str) -> dict[str, Any]:
    """The quality models the workflow fitted for a network and its CRF on a dataset, by "network" and "crf"
    (those present: a dataset without labelled validation subjects has unfitted ones, kept as well)."""
    name = network.removesuffix(f"{APPLIED_SEPARATOR}{FOLDS}")
    models = {}
    for key, method in (("network", name), ("crf", f"{name}{CRF_SUFFIX}")):
        path = results / dataset / "quality" / f"{method}.yaml"
        if path.is_file():
            models[key] = yaml.safe_load(path.read_text())
    if not models:
        log.warning("no quality model of %s on %s (run the workflow's quality control first): lesionseg predict "
                    "will score its segmentations without one", network, dataset)
    return models


def export_model(config: Mapping[str, Any], dataset: str, network: str, out: str | Path,
                 results: str | Path = "results") -> dict[str, Any]:
    """Write a dataset's network (model, ensemble, or the k fold models) as one model file; returns its
    contents without weights, for a summary."""
    from lesionseg.training.checkpoints import combine_model_files, save_model_file  # torch: not at the parse

    results = Path(results)
    files = network_model_files(config, dataset, network, results)
    crf: dict[str, Any] | None = None
    crf_tuning: dict[str, Any] = {}
    if config["crf"]["enabled"]:
        crf = dict(config["crf"]["parameters"])
        if config["crf"]["tune"]["enabled"]:
            tuned = results / dataset / "crf" / network.removesuffix(f"{APPLIED_SEPARATOR}{FOLDS}") / "parameters.yaml"
            if not tuned.is_file():
                raise ConfigError(f"the CRF of {network!r} on {dataset!r} is not tuned yet ({tuned} is missing); run "
                                  f"the workflow first, e.g. snakemake --cores N {tuned}")
            record = yaml.safe_load(tuned.read_text())
            crf = record["parameters"]
            crf_tuning = {k: record[k] for k in ("validation_subjects", "mean_dice", "network_mean_dice")
                          if k in record}
    combined = combine_model_files(files, network, crf, {"dataset": dataset, "crf_tuning": crf_tuning})
    combined["quality_models"] = fitted_quality_models(results, dataset, network)
    save_model_file(out, combined)
    log.info("wrote %s: %d network(s) of %s on %s", out, len(combined["networks"]), network, dataset)
    return {k: v for k, v in combined.items() if k != "networks"} | {
        "networks": [{k: v for k, v in n.items() if k not in ("state_dict", "history")}
                     for n in combined["networks"]]}
