"""Model files: one layout for a network, an ensemble and k fold models; averaged like the workflow's files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lesionseg.inference.outputs import read_probabilities
from lesionseg.inference.segmentation_steps import ensemble_subject
from lesionseg.inference.steps import infer_subject, load_networks, network_probabilities
from lesionseg.io import read_image, write_nifti
from lesionseg.models import build_model
from lesionseg.training.checkpoints import (ModelMismatchError, combine_model_files, network_record,
                                            read_model_file, save_model_file)

SMALL = {"maps": [4, 4, 4, 4, 4, 4, 4, 4], "fc_maps": [8, 8]}
SETTINGS = {"segment_size": 9, "batch_size": 2, "precision": "float32", "memory_budget_mb": 256}


def model_file(path, seed, modalities=("flair", "t1")):
    torch.manual_seed(seed)
    network = build_model("deepmedic", len(modalities), 3, SMALL)
    save_model_file(path, {
        "name": f"net{seed}", "networks": [network_record(network, f"net{seed}", "deepmedic", SMALL)],
        "scheme": {"name": "two", "classes": {"background": [0], "a": [1], "b": [2]}, "regions": {"ab": [1, 2]}},
        "modalities": list(modalities), "preprocessing": {"resample": {"spacing_mm": 2.0}},
        "preprocessing_fingerprint": "fp", "provenance": {"dataset": "d"},
    })
    return path


def test_an_ensemble_file_averages_exactly_as_the_workflow_averages_its_members(tmp_path):
    paths = [model_file(tmp_path / f"m{k}.pt", k) for k in range(3)]
    combined = combine_model_files(paths, "trio", {"iterations": 2}, {"dataset": "d"})
    save_model_file(tmp_path / "trio.pt", combined)
    contents = read_model_file(tmp_path / "trio.pt")
    assert [n["name"] for n in contents["networks"]] == ["net0", "net1", "net2"]
    assert contents["crf_parameters"] == {"iterations": 2} and "torch" in contents["provenance"]["versions"]

    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 14, 13, 12)).astype(np.float32)
    mask = np.ones(image.shape[1:], dtype=bool)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    write_nifti(tmp_path / "image.nii.gz", np.moveaxis(image, 0, -1), affine)
    write_nifti(tmp_path / "mask.nii.gz", mask.astype(np.uint8), affine)
    # The workflow: one probability file per member, then the ensemble rule.
    for k, path in enumerate(paths):
        infer_subject([path], tmp_path / "image.nii.gz", tmp_path / "mask.nii.gz", tmp_path / f"p{k}.nii.gz",
                      tmp_path / f"mi{k}.nii.gz", "fp", SETTINGS)
        assert not read_image(tmp_path / f"mi{k}.nii.gz").data.any()  # one prediction: nothing to disagree
    ensemble_subject([tmp_path / f"p{k}.nii.gz" for k in range(3)], [tmp_path / f"mi{k}.nii.gz" for k in range(3)],
                     tmp_path / "ensemble.nii.gz", tmp_path / "ensemble_mi.nii.gz")
    # One file of three networks (an exported ensemble), and three files in one job (the k fold models).
    infer_subject([tmp_path / "trio.pt"], tmp_path / "image.nii.gz", tmp_path / "mask.nii.gz",
                  tmp_path / "one_file.nii.gz", tmp_path / "one_file_mi.nii.gz", "fp", SETTINGS)
    infer_subject(paths, tmp_path / "image.nii.gz", tmp_path / "mask.nii.gz", tmp_path / "three_files.nii.gz",
                  tmp_path / "three_files_mi.nii.gz", "fp", SETTINGS)
    expected = read_probabilities(tmp_path / "ensemble.nii.gz").data
    assert np.array_equal(read_probabilities(tmp_path / "one_file.nii.gz").data, expected)
    assert np.array_equal(read_probabilities(tmp_path / "three_files.nii.gz").data, expected)
    expected_mi = read_image(tmp_path / "ensemble_mi.nii.gz").data
    assert expected_mi.max() > 0.01  # three differently initialised networks disagree somewhere
    for name in ("one_file", "three_files"):
        np.testing.assert_allclose(read_image(tmp_path / f"{name}_mi.nii.gz").data, expected_mi, atol=1e-5)
    names, networks, _ = load_networks(paths, "fp", torch.device("cpu"))
    direct, direct_mi = network_probabilities(names, networks, image, mask, torch.device("cpu"), SETTINGS,
                                              progress=False)
    assert np.array_equal(direct, expected)
    np.testing.assert_allclose(direct_mi, expected_mi, atol=1e-5)


def test_networks_of_other_inputs_or_preprocessing_are_not_combined_or_applied(tmp_path):
    first = model_file(tmp_path / "a.pt", 0)
    other = model_file(tmp_path / "b.pt", 1, modalities=("flair", "t2"))
    with pytest.raises(ModelMismatchError, match="its modalities differs"):
        combine_model_files([first, other], "pair", None, {})
    with pytest.raises(ModelMismatchError, match="preprocessed differently"):
        load_networks([first], "another fingerprint", torch.device("cpu"))
