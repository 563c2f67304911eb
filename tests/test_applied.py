"""Networks applied across datasets: names, preprocessing taken from the model, modalities and classes matched."""

from __future__ import annotations

import copy

import pytest

from lesionseg.config import ConfigError, validate_config
from lesionseg.datasets import datasets_from_config
from lesionseg.datasets.applied import applied_links
from lesionseg.inference.methods import dataset_methods, dataset_model_names, dataset_networks
from lesionseg.labels import LABEL_SCHEMES, class_mapping
from lesionseg.training.settings import resolve_models

BASE = {
    "datasets": {
        "source": {"format": "synthetic", "synthetic": {"spacing_mm": 3.0}, "models": ["dm"],
                   "ensembles": ["pair"], "preprocessing": {"bias_correction": {"modalities": ["t1", "t1ce"]}}},
        "target": {"format": "generic", "root": "/nowhere", "images": "{subject}/{modality}.nii.gz",
                   "modalities": ["t2", "t1", "flair", "t1c", "dwi"],
                   "models": [{"model": "dm", "trained_on": "source", "modality_map": {"t1ce": "t1c"}}],
                   "ensembles": [{"ensemble": "pair", "trained_on": "source", "modality_map": {"t1ce": "t1c"}}]},
    },
    "models": {"dm": {"architecture": "deepmedic"}, "dm2": {"architecture": "deepmedic"}},
    "ensembles": {"pair": {"members": ["dm", "dm2"]}},
}


def config(**changes):
    cfg = copy.deepcopy(BASE)
    for path, value in changes.items():
        *keys, last = path.split("__")
        node = cfg
        for key in keys:
            node = node[key]
        node[last] = value
    return validate_config(cfg)


def test_a_network_trained_elsewhere_is_named_after_its_dataset_and_never_trained_here():
    cfg = config()
    assert dataset_model_names(cfg, "target") == []
    assert list(dataset_networks(cfg, "target")) == ["dm@source", "dm2@source", "pair@source"]
    assert dataset_networks(cfg, "target")["pair@source"].members == ("dm@source", "dm2@source")
    assert "pair@source+crf" in dataset_methods(cfg, "target", postprocessing=False)
    folded = config(datasets__source__split={"folds": 3})
    assert list(dataset_networks(folded, "source")) == ["dm", "dm2", "dm@folds", "dm2@folds", "pair", "pair@folds"]
    assert dataset_networks(folded, "target")["dm@source"].folds


def test_the_target_is_preprocessed_as_the_model_was_trained_with_its_channels_and_classes_matched():
    cfg = config()
    datasets = datasets_from_config(cfg)
    source, target = datasets["source"], datasets["target"]
    for key in ("resample", "normalisation"):
        assert target.preprocessing[key] == source.preprocessing[key]
    assert target.preprocessing["resample"]["spacing_mm"] == 3.0
    # N4 on the model's t1 and t1ce (here t1c); the extra dwi as the target itself says (all by default).
    assert target.preprocessing["bias_correction"]["modalities"] == ["t1", "t1c", "dwi"]
    assert target.preprocessing["skull_strip"]["method"] == "none"  # its own way to a brain mask
    assert target.scheme.name == source.scheme.name  # no truth, no labels: the model's classes
    link = applied_links(cfg, datasets)["target", "dm@source"]
    assert link.channels == (2, 1, 3, 0) and link.classes is None  # source order flair, t1, t1ce, t2
    from lesionseg.preprocessing.settings import fingerprint
    assert link.fingerprint == fingerprint(source.preprocessing, source.modalities)
    assert applied_links(cfg, datasets)["target", "pair@source"].channels == link.channels


def test_brats_schemes_map_by_name_and_alias_and_unmappable_classes_are_named():
    assert class_mapping(LABEL_SCHEMES["brats2013"], LABEL_SCHEMES["brats2021"]) == [0, 1, 2, 1, 3]
    assert class_mapping(LABEL_SCHEMES["brats2021"], LABEL_SCHEMES["brats2023"]) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"classes \['resection_cavity'\].*class_map"):
        class_mapping(LABEL_SCHEMES["brats2023"], LABEL_SCHEMES["brats2021"])
    assert class_mapping(LABEL_SCHEMES["brats2023"], LABEL_SCHEMES["brats2021"],
                         {"resection_cavity": "background"}) == [0, 1, 2, 3, 0]
    lesion = {name: "lesion" for name in LABEL_SCHEMES["brats2013"].class_names[1:]}
    assert class_mapping(LABEL_SCHEMES["brats2013"], LABEL_SCHEMES["binary"], lesion) == [0, 1, 1, 1, 1]
    with pytest.raises(ValueError, match="not a class of 'binary'"):
        class_mapping(LABEL_SCHEMES["brats2013"], LABEL_SCHEMES["binary"], {"edema": "oedema"})


@pytest.mark.parametrize("changes, message", [
    ({"datasets__target__preprocessing": {"resample": {"spacing_mm": 1.0}}},
     r"preprocessing differs from that of .*resample.spacing_mm: 1.0 here, 3.0 for the model"),
    ({"datasets__target__modalities": ["t1", "flair", "t2"]},
     r"needs the modalities t1ce \(as t1c\), which the dataset does not have"),
    ({"datasets__target__modalities": ["t1", "flair", "t2", "t1c"], "datasets__target__labels": "binary"},
     r"dm@source: classes \['necrosis', 'edema', 'non_enhancing', 'enhancing'\].*class_map"),
    ({"datasets__target__models": [{"model": "dm", "trained_on": "elsewhere"}]}, "not a dataset of the config"),
    ({"datasets__target__models": [{"ensemble": "pair", "trained_on": "source"}]}, "models/0: .* is not valid"),
    ({"datasets__target__models": [{"model": "dm2", "trained_on": "source"}], "datasets__source__ensembles": []},
     r"'source' does not train \['dm2'\]"),
    ({"datasets__source__models": ["dm", {"model": "dm2", "trained_on": "target"}],
      "datasets__target__models": ["dm2", {"model": "dm", "trained_on": "source"}],
      "datasets__target__modalities": ["flair", "t1", "t1ce", "t2"], "datasets__target__ensembles": [],
      "datasets__source__ensembles": []}, r"apply each other's models in a circle"),
])
def test_applying_a_model_that_does_not_fit_is_a_clear_error_at_parse_time(changes, message):
    with pytest.raises(ConfigError, match=message):
        datasets_from_config(config(**changes))


def test_an_imported_model_takes_no_training_settings(tmp_path):
    cfg = config(models__imported={"pretrained": str(tmp_path / "m.pt"), "training": {"epochs": 3}})
    with pytest.raises(ConfigError, match="remove 'parameters:' and 'training:'"):
        resolve_models(cfg)
    with pytest.raises(ConfigError, match="model file not found"):
        datasets_from_config(config(models__imported={"pretrained": str(tmp_path / "m.pt")}))


def test_other_datasets_and_held_out_subjects_get_the_k_fold_models_together(tmp_path):
    from lesionseg.inference.export import model_files_of

    cfg = config(datasets__source__split={"folds": 3})
    folds = [tmp_path / f"source/models/dm/fold{k}/phase1/model.pt" for k in range(3)]
    assert model_files_of(cfg, "target", "dm@source", tmp_path) == folds
    assert model_files_of(cfg, "source", "dm@folds", tmp_path) == folds
    assert model_files_of(cfg, "source", "dm", tmp_path, fold=1) == folds[1:2]  # out-of-fold: its fold's model
    assert model_files_of(config(), "target", "dm@source", tmp_path) == [tmp_path / "source/models/dm/phase1/model.pt"]
