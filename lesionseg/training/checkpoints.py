"""Model files: trained networks plus everything needed to use them on other data.

One format serves the workflow's ``model.pt`` of each training phase and the
file ``lesionseg export-model`` writes: a dictionary saved by :func:`torch.save`
that holds only tensors and plain data, so that it is read with
``weights_only=True`` (a file from another site cannot run code when opened)::

    format, format_version   "lesionseg-model", MODEL_FILE_VERSION
    name                     the model (or ensemble) it is
    networks                 one or more networks, averaged (an ensemble, or the models of k folds):
                             name, architecture, parameters, in_channels, n_classes, training, phase,
                             best_epoch, best_score, history, state_dict (architecture nnunet: parameters
                             hold nnU-Net's plans, configuration, dataset.json, trainer and mirroring axes,
                             state_dict its network's weights; lesionseg.nnunet.training)
    scheme                   the label scheme: classes in output order (with names) and regions
    modalities               the input channels, in order
    preprocessing            the full preprocessing settings of the training data
    preprocessing_fingerprint  the hash of what defines the preprocessed images' meaning
    crf_parameters           the CRF parameters to use with it (tuned, or as configured), or None
    quality_models           optional: the quality models fitted on its validation subjects, "network" and
                             "crf" (lesionseg.evaluation.quality.QualityModel.to_mapping), for lesionseg predict
    provenance               dataset, training and validation subjects, package versions
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lesionseg.io import atomic_path
from lesionseg.machine import package_versions
from lesionseg.models import build_model
from lesionseg.nnunet import ARCHITECTURE as NNUNET

MODEL_FILE_FORMAT = "lesionseg-model"
MODEL_FILE_VERSION = 1
"""Version of the layout above; a reader refuses files of a newer one."""


class ModelMismatchError(ValueError):
    """A saved model does not fit the data it is asked to process."""


class ModelFileError(ValueError):
    """A file is not a model file this version of lesionseg can read."""


def network_record(model: nn.Module, name: str, architecture: str, parameters: Mapping[str, Any],
                   **details: Any) -> dict[str, Any]:
    """One network of a model file: how to build it, its weights (on the CPU) and ``details`` (training...)."""
    return {"name": name, "architecture": architecture, "parameters": dict(parameters),
            "in_channels": model.in_channels, "n_classes": model.n_classes, **details,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}


def save_model_file(path: str | Path, contents: Mapping[str, Any]) -> None:
    """Write a model file atomically (``contents`` as in the module docstring, without the format keys)."""
    missing = {"name", "networks", "scheme", "modalities", "preprocessing_fingerprint"} - set(contents)
    if missing:
        raise ValueError(f"a model file needs {sorted(missing)}")
    with atomic_path(path) as tmp:
        torch.save({"format": MODEL_FILE_FORMAT, "format_version": MODEL_FILE_VERSION, "crf_parameters": None,
                    "preprocessing": None, "provenance": {}, **contents}, tmp)


def read_model_file(path: str | Path) -> dict[str, Any]:
    """The contents of a model file (weights on the CPU), refusing what is not one or is of a newer format."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    try:
        contents = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # not a torch file, or one holding more than tensors and plain data
        raise ModelFileError(f"{path}: not a lesionseg model file ({type(err).__name__}: {str(err)[:200]}); "
                             "give a file written by 'lesionseg export-model' or a workflow's model.pt") from None
    if not isinstance(contents, dict) or contents.get("format") != MODEL_FILE_FORMAT:
        raise ModelFileError(f"{path}: not a lesionseg model file (no '{MODEL_FILE_FORMAT}' format marker); "
                             "give a file written by 'lesionseg export-model' or a workflow's model.pt")
    version = contents.get("format_version")
    if not isinstance(version, int) or version > MODEL_FILE_VERSION:
        raise ModelFileError(f"{path}: model file format version {version} is newer than this lesionseg reads "
                             f"(up to {MODEL_FILE_VERSION}); upgrade lesionseg")
    return contents


def check_fingerprint(path: str | Path, contents: Mapping[str, Any], expected: str | None) -> None:
    """Refuse data preprocessed otherwise than the model's training data."""
    if expected is not None and contents["preprocessing_fingerprint"] != expected:
        raise ModelMismatchError(
            f"{path}: the model was trained on data preprocessed differently (fingerprint "
            f"{contents['preprocessing_fingerprint']}, data {expected}); retrain it or preprocess the data "
            "with the model's settings"
        )


def build_networks(contents: Mapping[str, Any], device: torch.device | str = "cpu") -> list[nn.Module]:
    """The networks of a model file, with their weights, in eval mode on ``device``."""
    networks = []
    for record in contents["networks"]:
        if record["architecture"] == NNUNET:  # nnU-Net's own network, applied by its predictor
            from lesionseg.nnunet.prediction import NnUNetModel

            networks.append(NnUNetModel(record, contents["scheme"]).eval())
            continue
        network = build_model(record["architecture"], record["in_channels"], record["n_classes"],
                              record["parameters"])
        network.load_state_dict(record["state_dict"])
        networks.append(network.to(device).eval())
    return networks


def load_model(path: str | Path, expected_fingerprint: str | None = None,
               device: torch.device | str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """The single network of a model file (eval mode) and its metadata (file and network keys, no weights)."""
    contents = read_model_file(path)
    check_fingerprint(path, contents, expected_fingerprint)
    if len(contents["networks"]) != 1:
        raise ModelFileError(f"{path}: holds {len(contents['networks'])} networks (an ensemble); expected one")
    (network,) = build_networks(contents, device)
    record = {k: v for k, v in contents["networks"][0].items() if k != "state_dict"}
    return network, {**{k: v for k, v in contents.items() if k != "networks"}, **record}


def combine_model_files(paths: Sequence[str | Path], name: str, crf_parameters: Mapping[str, Any] | None,
                        provenance: Mapping[str, Any]) -> dict[str, Any]:
    """One model file's contents from the workflow's model files of a model, an ensemble's members or the
    models of k folds (all of the same labels, modalities and preprocessing)."""
    files = [read_model_file(p) for p in paths]
    first = files[0]
    for path, other in zip(paths[1:], files[1:]):
        for key in ("scheme", "modalities", "preprocessing_fingerprint"):
            if other[key] != first[key]:
                raise ModelMismatchError(f"{path}: its {key} differs from {paths[0]}'s; the networks of one model "
                                         "file must share labels, modalities and preprocessing")
    return {
        "name": name,
        # Each network keeps the provenance of its own file (the subjects it was trained and validated on).
        "networks": [{**network, "provenance": network.get("provenance", contents.get("provenance", {}))}
                     for contents in files for network in contents["networks"]],
        "scheme": first["scheme"], "modalities": first["modalities"], "preprocessing": first["preprocessing"],
        "preprocessing_fingerprint": first["preprocessing_fingerprint"],
        "crf_parameters": dict(crf_parameters) if crf_parameters is not None else None,
        "provenance": {**first.get("provenance", {}), **provenance, "versions": package_versions()},
    }
