"""Segmentation methods of a dataset: its models, its ensembles, and each of them followed by the CRF.

A method's name is where its results go (``results/{dataset}/segmentations/{method}/``):
a model name, an ensemble name, or either followed by :data:`CRF_SUFFIX`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lesionseg.config import ConfigError

CRF_SUFFIX = "+crf"


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


def dataset_methods(config: Mapping[str, Any], dataset: str) -> list[str]:
    """Every method whose segmentations a dataset gets: its models (ensemble members included, so they can be
    compared with their ensemble), its ensembles, then each of them with the CRF."""
    base = dataset_model_names(config, dataset) + list(config["datasets"][dataset].get("ensembles", []))
    if config.get("crf", {}).get("enabled", True):
        return base + [name + CRF_SUFFIX for name in base]
    return base


def split_method(method: str) -> tuple[str, bool]:
    """``(network method, with CRF)`` of a method name."""
    if method.endswith(CRF_SUFFIX):
        return method[: -len(CRF_SUFFIX)], True
    return method, False
