"""Segmentation methods of a dataset: its models, its ensembles, each of them followed by the CRF, and each of
those followed by the post-processing chosen on the validation split.

A method's name is where its results go (``results/{dataset}/segmentations/{method}/``):
a model name or an ensemble name (a *network*), optionally followed by :data:`CRF_SUFFIX`,
optionally followed by :data:`PP_SUFFIX` (``deepmedic``, ``deepmedic+crf``, ``deepmedic+pp``,
``deepmedic+crf+pp``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lesionseg.config import ConfigError

CRF_SUFFIX = "+crf"
"""Suffix of a method's name after the 3D CRF (``deepmedic`` -> ``deepmedic+crf``)."""
PP_SUFFIX = "+pp"
"""Suffix of a method's name after the post-processing (``deepmedic+crf`` -> ``deepmedic+crf+pp``); last."""


def resolve_ensembles(config: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """Ensemble name -> member models, checked against the config's models and datasets."""
    models = config.get("models", {})
    ensembles = {name: tuple(entry["members"]) for name, entry in config.get("ensembles", {}).items()}
    for name, members in ensembles.items():
        if name in models:
            raise ConfigError(f"ensemble {name!r}: a model has the same name; rename one of them")
        unknown = [m for m in members if m not in models]
        if unknown:
            raise ConfigError(f"ensemble {name!r}: members {unknown} are not defined under 'models:'")
    for dataset, entry in config["datasets"].items():
        for name in entry.get("ensembles", []):
            if name not in ensembles:
                raise ConfigError(f"dataset {dataset!r}: ensemble {name!r} is not defined under 'ensembles:'")
    return ensembles


def dataset_model_names(config: Mapping[str, Any], dataset: str) -> list[str]:
    """Models trained and applied on a dataset: its own list, then its ensembles' members."""
    entry = config["datasets"][dataset]
    names = list(entry.get("models", []))
    for ensemble in entry.get("ensembles", []):
        names += [m for m in config["ensembles"][ensemble]["members"] if m not in names]
    return names


def dataset_networks(config: Mapping[str, Any], dataset: str) -> list[str]:
    """What produces a dataset's probabilities: its models (ensemble members included, so they can be compared
    with their ensemble), then its ensembles."""
    return dataset_model_names(config, dataset) + list(config["datasets"][dataset].get("ensembles", []))


def dataset_methods(config: Mapping[str, Any], dataset: str, postprocessing: bool = True) -> list[str]:
    """Every method whose segmentations a dataset gets: its networks, then each of them with the CRF, then each
    of those with the post-processing (when enabled and ``postprocessing``: the dataset has labelled validation
    subjects to choose it on)."""
    methods = dataset_networks(config, dataset)
    if config.get("crf", {}).get("enabled", True):
        methods += [name + CRF_SUFFIX for name in methods]
    if postprocessing and config.get("postprocessing", {}).get("enabled", True):
        methods += [name + PP_SUFFIX for name in methods]
    return methods


def split_postprocessing(method: str) -> tuple[str, bool]:
    """``(method without the post-processing, with post-processing)`` of a method name."""
    if method.endswith(PP_SUFFIX):
        return method[: -len(PP_SUFFIX)], True
    return method, False


def split_method(method: str) -> tuple[str, bool]:
    """``(network, with CRF)`` of a method name, with or without the post-processing."""
    method = split_postprocessing(method)[0]
    if method.endswith(CRF_SUFFIX):
        return method[: -len(CRF_SUFFIX)], True
    return method, False
