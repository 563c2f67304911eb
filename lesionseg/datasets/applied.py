"""What a dataset takes from the models applied to it that were trained elsewhere.

A model trained on one dataset (or imported from a model file) and applied to
another brings its inputs (modalities, in channel order), its classes and the
preprocessing that defines what it sees (:data:`~lesionseg.preprocessing.settings.MODEL_KEYS`).
The dataset is preprocessed as the model was trained; its modalities are
matched by name (``modality_map`` where names differ) and the model's classes
are mapped onto its label scheme by name (``class_map`` where names differ).
Everything is checked when the config is read, with messages that say what to change.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lesionseg.config import ConfigError
from lesionseg.inference.methods import Network, dataset_networks, pretrained_models
from lesionseg.labels import LabelScheme, class_mapping, scheme_from_config
from lesionseg.preprocessing.settings import MODEL_KEYS, corrected_modalities, fingerprint, model_preprocessing

if TYPE_CHECKING:
    from lesionseg.datasets import Dataset


@dataclass(frozen=True)
class ModelInputs:
    """What a model expects of the data it segments, in the model's own modality names."""

    modalities: tuple[str, ...]
    scheme: LabelScheme
    preprocessing: Mapping[str, Any]  # the settings of MODEL_KEYS, bias-corrected modalities listed
    source: str  # where it comes from, for messages: "dataset 'brats21'" or "model file m.pt"
    crf_parameters: Mapping[str, Any] | None = None  # a model file's own CRF parameters


@lru_cache(maxsize=None)
def model_file_inputs(path: str | Path) -> ModelInputs:
    """The inputs of a model file (read at parse time: a few MB)."""
    from lesionseg.training.checkpoints import ModelFileError, read_model_file

    try:
        contents = read_model_file(path)
    except ModelFileError as err:
        raise ConfigError(str(err)) from None
    modalities = tuple(contents["modalities"])
    if contents.get("preprocessing") is None:
        raise ConfigError(f"{path}: the model file does not hold its preprocessing settings; export it again with "
                          "'lesionseg export-model'")
    scheme = scheme_from_config(contents["scheme"], name=contents["scheme"]["name"])
    return ModelInputs(modalities, scheme, model_preprocessing(contents["preprocessing"], modalities),
                       f"model file {path}", contents.get("crf_parameters"))


def dataset_inputs(source: Dataset) -> ModelInputs:
    """The inputs of the models trained on a dataset: its modalities, classes and model preprocessing."""
    return ModelInputs(source.modalities, source.scheme,
                       model_preprocessing(source.preprocessing, source.modalities), f"dataset {source.name!r}")


def channel_order(inputs: ModelInputs, modalities: Sequence[str], modality_map: Mapping[str, str]) -> list[int]:
    """For each of the model's channels, the index of the dataset's modality that feeds it."""
    unknown = sorted(set(modality_map) - set(inputs.modalities))
    if unknown:
        raise ValueError(f"modality_map names {unknown}, which the model ({inputs.source}) does not take "
                         f"(it takes {list(inputs.modalities)})")
    wanted = [modality_map.get(m, m) for m in inputs.modalities]
    missing = [f"{m} (as {w})" if w != m else m for m, w in zip(inputs.modalities, wanted) if w not in modalities]
    if missing:
        raise ValueError(f"the model ({inputs.source}) needs the modalities {', '.join(missing)}, which the dataset "
                         f"does not have (it has {list(modalities)}); add them or map names with modality_map: "
                         "{model's name: dataset's name}")
    return [list(modalities).index(w) for w in wanted]


def in_dataset_names(preprocessing: Mapping[str, Any], modality_map: Mapping[str, str]) -> dict[str, Any]:
    """Model preprocessing settings with the bias-corrected modalities renamed to the dataset's names."""
    settings = copy.deepcopy(dict(preprocessing))
    settings["bias_correction"]["modalities"] = [modality_map.get(m, m)
                                                 for m in settings["bias_correction"]["modalities"]]
    return settings


def in_model_names(settings: Mapping[str, Any], dataset_modalities: Sequence[str], inputs: ModelInputs,
                   modality_map: Mapping[str, str]) -> dict[str, Any]:
    """A dataset's model preprocessing in the model's names and channels (to compare fingerprints)."""
    chosen = model_preprocessing(settings, tuple(dataset_modalities))
    to_model = {modality_map.get(m, m): m for m in inputs.modalities}
    chosen["bias_correction"]["modalities"] = [to_model[m] for m in chosen["bias_correction"]["modalities"]
                                               if m in to_model]
    return chosen


def _leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, value


def _differences(mine: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
    theirs_flat = dict(_leaves(theirs))
    return [f"{key}: {value!r} here, {theirs_flat[key]!r} for the model"
            for key, value in _leaves(mine) if key in theirs_flat and theirs_flat[key] != value]


def adopt_preprocessing(dataset: Dataset, applied: Sequence[tuple[Network, ModelInputs]]) -> Dataset:
    """``dataset`` preprocessed as the models applied to it were trained (the settings of MODEL_KEYS).

    Raises if the dataset's own ``preprocessing:`` entry sets them otherwise, or if two applied models were
    trained on differently preprocessed data (one preprocessing per dataset).
    """
    if not applied:
        return dataset
    adopted: dict[str, Any] | None = None
    adopted_from = ""
    for network, inputs in applied:
        wanted = in_dataset_names(inputs.preprocessing, network.modality_map)
        try:
            channel_order(inputs, dataset.modalities, network.modality_map)
        except ValueError as err:
            raise ConfigError(f"dataset {dataset.name!r}, {network.name}: {err}") from None
        # The dataset's channels this model does not take stay corrected as the dataset says.
        taken = {network.modality_map.get(m, m) for m in inputs.modalities}
        own = corrected_modalities(dataset.preprocessing["bias_correction"], dataset.modalities)
        corrected = set(wanted["bias_correction"]["modalities"])
        wanted["bias_correction"]["modalities"] = [m for m in dataset.modalities
                                                   if (m in corrected if m in taken else m in own)]
        if adopted is not None and _comparable(adopted) != _comparable(wanted):
            raise ConfigError(
                f"dataset {dataset.name!r}: {adopted_from} and {network.name} were trained on data preprocessed "
                f"differently ({'; '.join(_differences(_comparable(wanted), _comparable(adopted)))}); one dataset "
                "has one preprocessing: apply them to two dataset entries of the same data"
            )
        adopted, adopted_from = wanted, network.name
    assert adopted is not None
    overrides = {k: v for k, v in dataset.entry.get("preprocessing", {}).items() if k in MODEL_KEYS}
    conflicts = _differences(overrides, adopted)
    if conflicts:
        raise ConfigError(
            f"dataset {dataset.name!r}: its preprocessing differs from that of {adopted_from}, which it applies "
            f"({'; '.join(conflicts)}); a model segments data preprocessed as its training data: remove these "
            "keys from the dataset's 'preprocessing:'"
        )
    settings = copy.deepcopy(dict(dataset.preprocessing))
    settings.update(copy.deepcopy(adopted))
    return replace(dataset, preprocessing=settings)


def _comparable(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings with the corrected modalities as a sorted list (their order carries no meaning)."""
    settings = copy.deepcopy(dict(settings))
    settings["bias_correction"]["modalities"] = sorted(settings["bias_correction"]["modalities"])
    return settings


@dataclass(frozen=True)
class AppliedLink:
    """How one network's outputs fit a dataset: its channels among the dataset's, its classes among the
    dataset's (None: the same), the fingerprint its data must have, and a model file's own CRF parameters."""

    channels: tuple[int, ...] | None
    classes: tuple[int, ...] | None
    fingerprint: str
    crf_parameters: Mapping[str, Any] | None = None


def applied_links(config: Mapping[str, Any], datasets: Mapping[str, Dataset]) -> dict[tuple[str, str], AppliedLink]:
    """``(dataset, network) -> AppliedLink`` for every network a dataset applies from elsewhere."""
    links = {}
    imported = {name: model_file_inputs(path) for name, path in pretrained_models(config).items()}
    for name, dataset in datasets.items():
        for network in dataset_networks(config, name).values():  # ensembles come after their members
            if network.trained_on == name:
                continue
            if network.is_ensemble:  # its CRF sees the image as its members do
                links[name, network.name] = links[name, network.members[0]]
                continue
            inputs = (imported[network.model] if network.trained_on is None
                      else dataset_inputs(datasets[network.trained_on]))
            channels = channel_order(inputs, dataset.modalities, network.modality_map)
            classes = class_mapping(inputs.scheme, dataset.scheme, network.class_map)
            settings = in_model_names(dataset.preprocessing, dataset.modalities, inputs, network.modality_map)
            links[name, network.name] = AppliedLink(
                None if channels == list(range(len(dataset.modalities))) else tuple(channels),
                None if classes == list(range(dataset.scheme.n_classes)) else tuple(classes),
                fingerprint(settings, inputs.modalities), inputs.crf_parameters)
    return links


def resolve_applied(config: Mapping[str, Any], base: Mapping[str, Dataset]) -> dict[str, Dataset]:
    """Every dataset preprocessed as the models applied to it were trained, its label scheme defaulting to the
    applied model's where it has no truth and names none, and every applied model checked against it."""
    imported = {name: model_file_inputs(path) for name, path in pretrained_models(config).items()}
    resolved: dict[str, Dataset] = {}
    in_progress: list[str] = []

    def inputs_of(network: Network) -> ModelInputs:
        return imported[network.model] if network.trained_on is None else dataset_inputs(resolve(network.trained_on))

    def resolve(name: str) -> Dataset:
        if name in resolved:
            return resolved[name]
        if name in in_progress:
            raise ConfigError(f"datasets {in_progress[in_progress.index(name):]} apply each other's models in a "
                              "circle; train a model on one of them only")
        in_progress.append(name)
        dataset = base[name]
        applied = [(n, inputs_of(n)) for n in dataset_networks(config, name).values()
                   if n.trained_on != name and not n.is_ensemble]
        dataset = adopt_preprocessing(dataset, applied)
        if applied and not dataset.has_truth and "labels" not in dataset.entry:
            dataset = replace(dataset, scheme=applied[0][1].scheme)  # an unlabelled cohort: the model's classes
        for network, inputs in applied:
            try:
                class_mapping(inputs.scheme, dataset.scheme, network.class_map)
            except ValueError as err:
                raise ConfigError(f"dataset {dataset.name!r}, {network.name}: {err}") from None
        in_progress.pop()
        resolved[name] = dataset
        return dataset

    for name in base:
        resolve(name)
    return resolved
