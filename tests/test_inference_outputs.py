"""Methods of a dataset, probability maps on disk, ensembles, and results on the original grid."""

from __future__ import annotations

import numpy as np
import pytest

from lesionseg.config import ConfigError
from lesionseg.inference.methods import dataset_methods, dataset_model_names, resolve_ensembles, split_method
from lesionseg.inference.outputs import (
    probabilities_on_original_grid,
    read_probabilities,
    remove_small_components,
    segmentation_from_probabilities,
    write_probabilities,
)
from lesionseg.crf import CRFParameters
from lesionseg.inference.segmentation_steps import ensemble_subject, export_subject
from lesionseg.inference.steps import crf_subject
from lesionseg.inference.uncertainty import normalised_entropy
from lesionseg.io import read_image, write_nifti
from lesionseg.labels import LABEL_SCHEMES
from lesionseg.preprocessing.geometry import GridGeometry

BRATS = LABEL_SCHEMES["brats2021"]


def config(crf=True, ensembles=None, dataset_ensembles=()):
    return {
        "datasets": {"d": {"models": ["a"], "ensembles": list(dataset_ensembles)}},
        "models": {"a": {}, "b": {}, "c": {}},
        "ensembles": ensembles or {},
        "crf": {"enabled": crf},
    }


def random_probabilities(shape, n_classes=4, seed=0):
    logits = np.random.default_rng(seed).normal(size=(n_classes, *shape)).astype(np.float32)
    e = np.exp(logits)
    return e / e.sum(axis=0)


def test_methods_are_models_ensembles_and_each_with_the_crf():
    cfg = config(ensembles={"abc": {"members": ["a", "b", "c"]}}, dataset_ensembles=["abc"])
    assert resolve_ensembles(cfg) == {"abc": ("a", "b", "c")}
    assert dataset_model_names(cfg, "d") == ["a", "b", "c"]  # members are trained too
    assert dataset_methods(cfg, "d", postprocessing=False) == ["a", "b", "c", "abc", "a+crf", "b+crf", "c+crf",
                                                               "abc+crf"]
    assert dataset_methods(config(crf=False), "d", postprocessing=False) == ["a"]
    assert split_method("abc+crf") == ("abc", True) and split_method("a") == ("a", False)


@pytest.mark.parametrize("ensembles, dataset_ensembles, message", [
    ({"e": {"members": ["a", "zz"]}}, [], r"members \['zz'\] are not defined"),
    ({"a": {"members": ["b", "c"]}}, [], "a model has the same name"),
    ({}, ["nope"], "ensemble 'nope' is not defined"),
])
def test_bad_ensembles_are_refused_with_the_reason(ensembles, dataset_ensembles, message):
    with pytest.raises(ConfigError, match=message):
        resolve_ensembles(config(ensembles=ensembles, dataset_ensembles=dataset_ensembles))


@pytest.mark.parametrize("dtype, tolerance", [("float32", 0.0), ("uint8", 1 / 500)])
def test_probability_maps_round_trip(tmp_path, dtype, tolerance):
    probabilities = random_probabilities((5, 6, 7))
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    path = tmp_path / "p.nii.gz"
    write_probabilities(path, probabilities, affine, dtype)
    back = read_probabilities(path)
    assert back.data.shape == probabilities.shape and np.allclose(back.affine, affine)
    assert np.abs(back.data - probabilities).max() <= tolerance + 1e-7
    with pytest.raises(ValueError, match="float16"):
        write_probabilities(path, probabilities, affine, "float16")


def test_small_lesion_components_are_removed_by_volume_in_mm3():
    classes = np.zeros((20, 20, 20), dtype=np.uint8)
    classes[2:6, 2:6, 2:6] = 1  # 64 voxels
    classes[4:6, 4:6, 4:6] = 3  # part of the same component
    classes[12:14, 12:14, 12:13] = 2  # 4 voxels
    spacing = (1.0, 2.0, 0.5)  # 1 mm^3 voxels
    cleaned, removed = remove_small_components(classes, spacing, min_volume_mm3=10)
    assert removed == 1 and not cleaned[12:14, 12:14, 12].any()
    assert (cleaned[2:6, 2:6, 2:6] == classes[2:6, 2:6, 2:6]).all()
    assert remove_small_components(classes, spacing, 0)[1] == 0
    # With voxels of 8 mm^3 the small component (32 mm^3) survives a 10 mm^3 threshold.
    assert remove_small_components(classes, (2.0, 2.0, 2.0), 10)[1] == 0


def test_segmentation_holds_the_raw_label_values():
    probabilities = np.zeros((4, 3, 3, 3), dtype=np.float32)
    probabilities[0] = 1
    probabilities[:, 1, 1, 1] = [0, 0, 0, 1]  # enhancing tumour: raw 4 in BraTS 2021
    probabilities[:, 0, 0, 0] = [0.1, 0.6, 0.3, 0]
    segmentation, _ = segmentation_from_probabilities(probabilities, BRATS, (1, 1, 1))
    assert segmentation[1, 1, 1] == 4 and segmentation[0, 0, 0] == 1 and (segmentation != 0).sum() == 2


def test_crop_back_to_the_original_grid_is_exact_and_background_outside():
    geometry = GridGeometry((20, 18, 16), np.diag([1.0, 1.0, 1.0, 1.0]), np.array([3.0, 2.0, 4.0]),
                            np.ones(3), (10, 9, 8))
    probabilities = random_probabilities(geometry.shape)
    original = probabilities_on_original_grid(probabilities, geometry)
    assert original.shape == (4, 20, 18, 16)
    assert np.array_equal(original[:, 3:13, 2:11, 4:12], probabilities)
    assert (original[0, :3] == 1).all() and (original[1:, :3] == 0).all()


def test_export_resamples_to_the_original_grid_and_affine(tmp_path):
    original_affine = np.array([[-1.0, 0, 0, 90], [0, 1, 0, -120], [0, 0, 1, -70], [0, 0, 0, 1]])
    geometry = GridGeometry((40, 40, 30), original_affine, np.array([4.0, 4.0, 2.0]), np.full(3, 2.0), (16, 16, 13))
    geometry.to_json(tmp_path / "geometry.json")
    probabilities = np.zeros((4, *geometry.shape), dtype=np.float32)
    probabilities[0] = 1
    probabilities[:, 5:11, 5:11, 4:9] = np.array([0, 0.2, 0.1, 0.7])[:, None, None, None]
    probabilities[:, 14, 14, 11] = [0, 1, 0, 0]  # a one-voxel speck, removed below
    write_probabilities(tmp_path / "p.nii.gz", probabilities, geometry.affine)
    disagreement = np.zeros(geometry.shape, dtype=np.float32)
    disagreement[5:11, 5:11, 4:9] = 0.25
    write_nifti(tmp_path / "mi.nii.gz", disagreement, geometry.affine)
    export_subject(tmp_path / "p.nii.gz", tmp_path / "mi.nii.gz", tmp_path / "geometry.json", BRATS,
                   tmp_path / "out_p.nii.gz", tmp_path / "seg.nii.gz", tmp_path / "entropy.nii.gz",
                   tmp_path / "out_mi.nii.gz", min_component_mm3=20, probabilities_dtype="uint8")
    segmentation = read_image(tmp_path / "seg.nii.gz", dtype=None)
    assert segmentation.data.shape == (40, 40, 30) and np.allclose(segmentation.affine, original_affine)
    assert set(np.unique(segmentation.data)) == {0, 4}
    # The lesion occupies original voxels 4 + 2 * [5, 11) along x, about 12 voxels.
    assert 10 <= segmentation.data.any(axis=(1, 2)).sum() <= 13
    exported = read_probabilities(tmp_path / "out_p.nii.gz")
    assert exported.data.shape == (4, 40, 40, 30) and np.allclose(exported.data.sum(axis=0), 1, atol=0.01)
    # The uncertainty maps on the same grid: certain background outside the crop, the lesion's entropy and the
    # network's disagreement inside it.
    entropy = read_image(tmp_path / "entropy.nii.gz")
    mutual_information = read_image(tmp_path / "out_mi.nii.gz")
    for volume in (entropy, mutual_information):
        assert volume.data.shape == (40, 40, 30) and np.allclose(volume.affine, original_affine)
    lesion = segmentation.data == 4
    assert entropy.data[0].max() == 0 and np.allclose(entropy.data[lesion].max(), normalised_entropy(
        np.array([0, 0.2, 0.1, 0.7])[:, None]).item(), atol=1e-3)
    assert mutual_information.data[0].max() == 0 and np.isclose(mutual_information.data[lesion].max(), 0.25)


def test_ensembles_average_their_members_and_refuse_other_grids(tmp_path):
    a, b = random_probabilities((4, 5, 6), seed=1), random_probabilities((4, 5, 6), seed=2)
    write_probabilities(tmp_path / "a.nii.gz", a, np.eye(4))
    write_probabilities(tmp_path / "b.nii.gz", b, np.eye(4))
    none = np.zeros((4, 5, 6), dtype=np.float32)
    write_nifti(tmp_path / "none.nii.gz", none, np.eye(4))  # single predictions: no disagreement inside
    members_mi = [tmp_path / "none.nii.gz"] * 2
    ensemble_subject([tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"], members_mi, tmp_path / "e.nii.gz",
                     tmp_path / "e_mi.nii.gz")
    assert np.allclose(read_probabilities(tmp_path / "e.nii.gz").data, (a + b) / 2, atol=1e-6)
    expected = normalised_entropy((a + b) / 2) - (normalised_entropy(a) + normalised_entropy(b)) / 2
    assert np.allclose(read_image(tmp_path / "e_mi.nii.gz").data, expected, atol=1e-5)
    write_probabilities(tmp_path / "c.nii.gz", b, np.diag([2.0, 2, 2, 1]))
    with pytest.raises(ValueError, match="grid differs"):
        ensemble_subject([tmp_path / "a.nii.gz", tmp_path / "c.nii.gz"], members_mi, tmp_path / "f.nii.gz",
                         tmp_path / "f_mi.nii.gz")


def test_the_example_config_is_valid_and_its_ensemble_resolves():
    import yaml

    from conftest import REPO
    from lesionseg.config import validate_config
    from lesionseg.training.settings import resolve_models

    cfg = validate_config(yaml.safe_load((REPO / "config/examples.yaml").read_text()))
    resolve_models(cfg)
    assert resolve_ensembles(cfg) == {"dm3x": ("dm1", "dm2", "dm3"), "dm1nn": ("dm1", "nn")}
    assert "dm3x+crf" in dataset_methods(cfg, "brats21")


def test_bad_inputs_of_the_crf_and_export_name_their_files(tmp_path):

    write_probabilities(tmp_path / "p.nii.gz", random_probabilities((6, 6, 6)), np.eye(4))
    write_nifti(tmp_path / "image.nii.gz", np.zeros((6, 6, 5, 2), np.float32), np.eye(4))  # wrong grid
    write_nifti(tmp_path / "mask.nii.gz", np.ones((6, 6, 5), np.uint8), np.eye(4))
    with pytest.raises(ValueError, match=r"CRF of .*p.nii.gz with the image .*image.nii.gz"):
        crf_subject(tmp_path / "p.nii.gz", tmp_path / "image.nii.gz", tmp_path / "mask.nii.gz",
                    tmp_path / "out.nii.gz", CRFParameters())
    assert not (tmp_path / "out.nii.gz").exists()

    geometry = GridGeometry((12, 12, 12), np.eye(4), np.zeros(3), np.ones(3), (7, 6, 6))
    geometry.to_json(tmp_path / "geometry.json")
    write_nifti(tmp_path / "mi.nii.gz", np.zeros((6, 6, 6), np.float32), np.eye(4))
    with pytest.raises(ValueError, match=r"p.nii.gz: shape \(6, 6, 6\) differs .*geometry.json"):
        export_subject(tmp_path / "p.nii.gz", tmp_path / "mi.nii.gz", tmp_path / "geometry.json", BRATS,
                       tmp_path / "po.nii.gz", tmp_path / "seg.nii.gz", tmp_path / "h.nii.gz", tmp_path / "mo.nii.gz")
    assert not (tmp_path / "po.nii.gz").exists() and not (tmp_path / "seg.nii.gz").exists()
