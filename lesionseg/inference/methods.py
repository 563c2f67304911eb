"""Segmentation methods of a dataset: its models, its ensembles, each of them followed by the CRF, and each of
those followed by the post-processing chosen on the validation split.

A method's name is where its results go (``results/{dataset}/segmentations/{method}/``):
a model name or an ensemble name (a *network*; ``name@dataset`` when trained on another dataset,
``name@folds`` for the k fold models of a cross-validation), optionally followed by :data:`CRF_SUFFIX`,
optionally followed by :data:`PP_SUFFIX` (``deepmedic``, ``deepmedic+crf``, ``deepmedic+pp``,
``deepmedic+crf+pp``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lesionseg.config import ConfigError

CRF_SUFFIX = "+crf"
"""Suffix of a method's name after the 3D CRF (``deepmedic`` -> ``deepmedic+crf``)."""
PP_SUFFIX = "+pp"
"""Suffix of a method's name after the post-processing (``deepmedic+crf`` -> ``deepmedic+crf+pp``); last."""


APPLIED_SEPARATOR = "@"
"""Between a network's name and where it was trained (``deepmedic@brats21``), or ``folds``."""
FOLDS = "folds"
"""``{model}@folds``: the models of a cross-validation's k folds, averaged."""


@dataclass(frozen=True)
class Network:
    """What gives a dataset its probability maps: a model or an ensemble, trained on this dataset, trained on
    another dataset of the config, or imported from a model file (``trained_on`` None).

    On a dataset with k-fold cross-validation, a network trained on it segments each labelled subject of
    the folds with the fold model that never saw it (out-of-fold); ``folds`` is the average of the k fold
    models (``{model}@folds``), which is what segments other subjects and other datasets.
    """

    name: str
    model: str
    trained_on: str | None
    members: tuple[str, ...] = ()
    folds: bool = False
    modality_map: Mapping[str, str] = field(default_factory=dict)
    class_map: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_ensemble(self) -> bool:
        return bool(self.members)


def fold_count(config: Mapping[str, Any], dataset: str) -> int:
    """The k of a dataset's k-fold cross-validation (0 without one)."""
    return int(config["datasets"][dataset].get("split", {}).get("folds", 0))


def _entry_name(item: str | Mapping[str, Any], key: str) -> str:
    return item if isinstance(item, str) else item[key]


def pretrained_models(config: Mapping[str, Any]) -> dict[str, str]:
    """Model name -> model file, for the models the config imports (``models: {name: {pretrained: FILE}}``)."""
    return {name: entry["pretrained"] for name, entry in config.get("models", {}).items() if "pretrained" in entry}


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
        imported = [m for m in members if "pretrained" in models[m]]
        if imported:
            raise ConfigError(f"ensemble {name!r}: members {imported} are imported model files; an ensemble "
                              "averages models trained by the workflow (export an ensemble to import one)")
    for dataset, entry in config["datasets"].items():
        for item in entry.get("ensembles", []):
            name = _entry_name(item, "ensemble")
            if name not in ensembles:
                raise ConfigError(f"dataset {dataset!r}: ensemble {name!r} is not defined under 'ensembles:'")
    return ensembles


def dataset_model_names(config: Mapping[str, Any], dataset: str) -> list[str]:
    """Models trained on a dataset: its own list (not those trained elsewhere or imported), then its
    ensembles' members."""
    entry, imported = config["datasets"][dataset], pretrained_models(config)
    names = [item for item in entry.get("models", []) if isinstance(item, str) and item not in imported]
    for item in entry.get("ensembles", []):
        if isinstance(item, str):
            names += [m for m in config["ensembles"][item]["members"] if m not in names]
    return names


def _applied(item: Mapping[str, Any], key: str, dataset: str, config: Mapping[str, Any]) -> tuple[str, str]:
    """``(name, source)`` of a network trained on another dataset, checked."""
    name, source = item[key], item["trained_on"]
    if source == dataset:
        raise ConfigError(f"dataset {dataset!r}: {key} {name!r} trained_on {source!r} is this dataset; list it by "
                          "its name alone")
    if source not in config["datasets"]:
        raise ConfigError(f"dataset {dataset!r}: {key} {name!r} trained_on {source!r}, which is not a dataset of "
                          f"the config (it has {sorted(config['datasets'])})")
    trained = dataset_model_names(config, source)
    wanted = [name] if key == "model" else list(config["ensembles"][name]["members"])
    missing = [m for m in wanted if m not in trained]
    if missing:
        raise ConfigError(f"dataset {dataset!r}: {key} {name!r} trained_on {source!r}, but {source!r} does not "
                          f"train {missing}: add {'it' if key == 'model' else 'the ensemble'} to {source!r}'s "
                          f"{key}s")
    return name, source


def dataset_networks(config: Mapping[str, Any], dataset: str) -> dict[str, Network]:
    """What produces a dataset's probabilities, by method name: its models (ensemble members included, so
    they can be compared with their ensemble), the models applied from elsewhere, then the ensembles."""
    entry, imported = config["datasets"][dataset], pretrained_models(config)
    own_folds = fold_count(config, dataset) > 0
    models: dict[str, Network] = {}
    ensembles: dict[str, Network] = {}

    def add_model(network: Network) -> None:
        models.setdefault(network.name, network)

    for name in dataset_model_names(config, dataset):
        add_model(Network(name, name, dataset))
    for item in entry.get("models", []):
        if isinstance(item, str):
            if item in imported:
                add_model(Network(item, item, None))
            continue
        name, source = _applied(item, "model", dataset, config)
        add_model(Network(f"{name}{APPLIED_SEPARATOR}{source}", name, source, folds=fold_count(config, source) > 0,
                          modality_map=item.get("modality_map", {}), class_map=item.get("class_map", {})))
    for item in entry.get("ensembles", []):
        name = _entry_name(item, "ensemble")
        members = config["ensembles"][name]["members"]
        if isinstance(item, str):
            ensembles[name] = Network(name, name, dataset, members=tuple(members))
            continue
        _, source = _applied(item, "ensemble", dataset, config)
        applied = []
        for member in members:
            network = Network(f"{member}{APPLIED_SEPARATOR}{source}", member, source,
                              folds=fold_count(config, source) > 0, modality_map=item.get("modality_map", {}),
                              class_map=item.get("class_map", {}))
            if network.name in models and models[network.name] != network:
                raise ConfigError(f"dataset {dataset!r}: {network.name} is applied twice with different "
                                  "modality_map / class_map")
            add_model(network)
            applied.append(network.name)
        ensembles[f"{name}{APPLIED_SEPARATOR}{source}"] = Network(f"{name}{APPLIED_SEPARATOR}{source}", name, source,
                                                                  members=tuple(applied))
    if own_folds:  # the k fold models of each own network, averaged
        for network in [*models.values(), *ensembles.values()]:
            if network.trained_on != dataset:
                continue
            folded = f"{network.name}{APPLIED_SEPARATOR}{FOLDS}"
            members = tuple(f"{m}{APPLIED_SEPARATOR}{FOLDS}" for m in network.members)
            target = ensembles if network.is_ensemble else models
            target[folded] = Network(folded, network.model, dataset, members=members, folds=True)
    return {**models, **ensembles}


def dataset_methods(config: Mapping[str, Any], dataset: str, postprocessing: bool = True) -> list[str]:
    """Every method whose segmentations a dataset gets: its networks, then each of them with the CRF, then each
    of those with the post-processing (when enabled and ``postprocessing``: the dataset has labelled validation
    subjects to choose it on)."""
    methods = list(dataset_networks(config, dataset))
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
