"""Post-processing chosen on the validation split: operations, the greedy choice, its records and methods."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from lesionseg.inference.methods import dataset_methods, split_method, split_postprocessing
from lesionseg.inference.outputs import write_probabilities
from lesionseg.inference.postprocessing import (
    LARGEST_COMPONENT,
    MIN_SIZE,
    NONE,
    PostprocessingChoice,
    RegionOperation,
    ValidationSegmentation,
    apply_choice,
    apply_operation,
    choose_postprocessing,
)
from lesionseg.inference.segmentation_steps import choose_postprocessing_on_validation, postprocess_subject
from lesionseg.io import read_image, write_nifti
from lesionseg.labels import LABEL_SCHEMES
from lesionseg.reporting.tables import crf_pairs, postprocessing_table

BINARY = LABEL_SCHEMES["binary"]
BRATS = LABEL_SCHEMES["brats2021"]  # classes 0 background, 1 necrotic (raw 1), 2 edema (raw 2), 3 enhancing (raw 4)
CANDIDATES = (10, 50, 100)
ONE_MM = (1.0, 1.0, 1.0)


def cube(classes: np.ndarray, corner: tuple[int, int, int], side: int, value: int) -> np.ndarray:
    x, y, z = corner
    classes[x:x + side, y:y + side, z:z + side] = value
    return classes


def binary_case(name: str, truth: np.ndarray, prediction: np.ndarray) -> ValidationSegmentation:
    return ValidationSegmentation.cropped(name, prediction, BINARY.to_raw(truth), ONE_MM)


def test_removing_a_far_false_positive_blob_raises_the_dice_and_is_chosen():
    truth = cube(np.zeros((40, 40, 40), np.uint8), (5, 5, 5), 10, 1)  # 1000 mm^3
    prediction = cube(truth.copy(), (30, 30, 30), 3, 1)  # and a 27 mm^3 blob far away
    search = choose_postprocessing([binary_case("s", truth, prediction)], BINARY, CANDIDATES)
    # Removing components below 50 mm^3 and keeping the largest do the same here: the gentler one is taken.
    assert search.choice.operations == {"lesion": RegionOperation(MIN_SIZE, 50.0)}
    assert search.dice_before["lesion"] == pytest.approx(2000 / 2027)
    assert search.dice_after["lesion"] == 1.0
    cleaned = apply_choice(prediction, BINARY, search.choice, ONE_MM)
    assert (cleaned == truth).all() and prediction[31, 31, 31] == 1  # the input is left as it was
    scores = {(row["operation"], row["min_component_mm3"]): row["mean_dice"] for row in search.candidates}
    assert scores[(MIN_SIZE, 10.0)] == scores[(NONE, None)]  # keeps the blob
    assert scores[(NONE, None)] < scores[(MIN_SIZE, 50.0)] == scores[(LARGEST_COMPONENT, None)]
    assert [row["chosen"] for row in search.candidates] == [False, False, True, False, False]


def test_an_operation_that_would_lower_the_dice_is_not_chosen():
    truth = cube(cube(np.zeros((40, 40, 40), np.uint8), (5, 5, 5), 5, 1), (30, 30, 30), 3, 1)
    prediction = truth.copy()  # both lesions (125 and 27 mm^3) right: any removal loses a true one
    other_truth = cube(np.zeros((20, 20, 20), np.uint8), (2, 2, 2), 5, 1)
    other_prediction = cube(other_truth.copy(), (15, 15, 15), 2, 1)  # a tiny false positive: 8 mm^3
    cases = [binary_case("a", truth, prediction), binary_case("b", other_truth, other_prediction)]
    # Removing below 10 mm^3 gains on b less than removing below 50 mm^3 loses on a; 10 is not offered here.
    search = choose_postprocessing(cases, BINARY, [50, 100])
    assert search.choice.operations["lesion"] == RegionOperation()
    assert search.dice_after == search.dice_before
    # With 10 mm^3 on offer, b gains and a loses nothing: chosen.
    assert choose_postprocessing(cases, BINARY, CANDIDATES).choice.operations["lesion"] == RegionOperation(MIN_SIZE, 10)


def test_no_gain_means_no_change():
    truth = cube(np.zeros((20, 20, 20), np.uint8), (2, 2, 2), 5, 1)
    search = choose_postprocessing([binary_case("s", truth, truth.copy())], BINARY, CANDIDATES)
    assert search.choice.operations["lesion"].kind == NONE  # every candidate ties with doing nothing


def test_largest_component_versus_a_size_threshold_in_mm3():
    classes = np.zeros((30, 30, 30), np.uint8)
    cube(classes, (1, 1, 1), 2, 1)  # 8 voxels
    cube(classes, (10, 10, 10), 4, 1)  # 64 voxels
    cube(classes, (20, 20, 20), 6, 1)  # 216 voxels
    spacing = (1.0, 1.0, 2.0)  # 2 mm^3 per voxel: 16, 128 and 432 mm^3
    largest = apply_operation(classes, BINARY, "lesion", RegionOperation(LARGEST_COMPONENT), spacing)
    assert largest.sum() == 216 and largest[22, 22, 22] == 1
    assert apply_operation(classes, BINARY, "lesion", RegionOperation(MIN_SIZE, 100), spacing).sum() == 64 + 216
    assert apply_operation(classes, BINARY, "lesion", RegionOperation(MIN_SIZE, 100), ONE_MM).sum() == 216
    assert apply_operation(classes, BINARY, "lesion", RegionOperation(MIN_SIZE, 500), spacing).sum() == 0
    assert apply_operation(classes, BINARY, "lesion", RegionOperation(), spacing) is classes
    # Diagonal neighbours are one component (26-connectivity).
    diagonal = np.zeros((5, 5, 5), np.uint8)
    diagonal[1, 1, 1] = diagonal[2, 2, 2] = 1
    assert apply_operation(diagonal, BINARY, "lesion", RegionOperation(LARGEST_COMPONENT), ONE_MM).sum() == 2


def test_the_largest_component_is_chosen_when_no_size_removes_the_false_positive():
    truth = cube(np.zeros((40, 40, 40), np.uint8), (5, 5, 5), 12, 1)  # 1728 mm^3
    prediction = cube(truth.copy(), (28, 28, 28), 7, 1)  # a 343 mm^3 false positive
    search = choose_postprocessing([binary_case("s", truth, prediction)], BINARY, CANDIDATES)
    assert search.choice.operations["lesion"] == RegionOperation(LARGEST_COMPONENT)
    assert search.dice_after["lesion"] == 1.0


def test_the_choice_round_trips_through_its_mapping_and_yaml():
    choice = PostprocessingChoice({"WT": RegionOperation(LARGEST_COMPONENT), "TC": RegionOperation(),
                                   "ET": RegionOperation(MIN_SIZE, 250.0)})
    mapping = choice.to_mapping()
    assert mapping == {"WT": {"operation": "largest_component"}, "TC": {"operation": "none"},
                       "ET": {"operation": "min_size", "min_component_mm3": 250.0}}
    back = PostprocessingChoice.from_mapping(yaml.safe_load(yaml.safe_dump(mapping, sort_keys=False)))
    assert back == choice and list(back.operations) == ["WT", "TC", "ET"]
    assert RegionOperation(MIN_SIZE, 250.0).describe() == "components < 250 mm³ removed"


@pytest.mark.parametrize("kind, volume, message", [
    ("opening", None, "not one of"),
    (MIN_SIZE, None, "needs a positive"),
    (MIN_SIZE, 0.0, "needs a positive"),
    (LARGEST_COMPONENT, 10.0, "takes no min_component_mm3"),
])
def test_bad_operations_are_refused(kind, volume, message):
    with pytest.raises(ValueError, match=message):
        RegionOperation(kind, volume)


def test_a_choice_for_other_regions_is_refused():
    with pytest.raises(ValueError, match="regions \\['WT'\\]"):
        apply_choice(np.zeros((3, 3, 3), np.uint8), BINARY, PostprocessingChoice({"WT": RegionOperation()}), ONE_MM)


def brats_tumour() -> np.ndarray:
    """Edema around a necrotic core with an enhancing rim, as class indices of brats2021."""
    classes = cube(np.zeros((40, 40, 40), np.uint8), (5, 5, 5), 14, 2)
    cube(classes, (8, 8, 8), 8, 3)
    return cube(classes, (10, 10, 10), 4, 1)


def test_nested_regions_count_in_every_region():
    assert BRATS.region_classes("WT") == (1, 2, 3) and BRATS.region_classes("TC") == (1, 3)
    truth = brats_tumour()
    prediction = cube(truth.copy(), (5, 5, 5), 2, 3)  # enhancing inside the true edema: TC and ET false positive
    search = choose_postprocessing([ValidationSegmentation.cropped("s", prediction, BRATS.to_raw(truth), ONE_MM)],
                                   BRATS, CANDIDATES)
    # WT has one component: nothing to gain. The 8 mm^3 TC component goes, to background, which costs WT a
    # little and gains TC and ET more.
    assert search.choice.operations == {"WT": RegionOperation(), "TC": RegionOperation(MIN_SIZE, 10.0),
                                        "ET": RegionOperation()}
    assert search.dice_after["WT"] < search.dice_before["WT"] == 1.0
    assert search.dice_after["TC"] == search.dice_after["ET"] == 1.0
    cleaned = apply_choice(prediction, BRATS, search.choice, ONE_MM)
    assert (cleaned[5:7, 5:7, 5:7] == 0).all() and (cleaned[cleaned != prediction] == 0).all()


def test_a_whole_tumour_choice_applies_before_the_inner_regions():
    truth = brats_tumour()
    prediction = cube(truth.copy(), (32, 32, 32), 2, 3)  # a far enhancing blob: WT, TC and ET false positive
    search = choose_postprocessing([ValidationSegmentation.cropped("s", prediction, BRATS.to_raw(truth), ONE_MM)],
                                   BRATS, CANDIDATES)
    assert search.choice.operations == {"WT": RegionOperation(MIN_SIZE, 10.0), "TC": RegionOperation(),
                                        "ET": RegionOperation()}
    assert search.dice_after == {"WT": 1.0, "TC": 1.0, "ET": 1.0}


def test_choice_files_and_postprocessed_segmentations(tmp_path):
    truth = cube(np.zeros((20, 20, 20), np.uint8), (2, 2, 2), 6, 1)
    prediction = cube(truth.copy(), (15, 15, 15), 2, 1)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])  # 8 mm^3 voxels: the blob is 64 mm^3
    probabilities = np.stack([1.0 - prediction, prediction]).astype(np.float32)
    write_probabilities(tmp_path / "p.nii.gz", probabilities, affine)
    write_nifti(tmp_path / "label.nii.gz", truth, affine)
    choice_path = tmp_path / "choice.yaml"
    choose_postprocessing_on_validation(["s"], [tmp_path / "p.nii.gz"], [tmp_path / "label.nii.gz"], BINARY, 0.0,
                                        CANDIDATES, choice_path)
    record = yaml.safe_load(choice_path.read_text())
    assert record["choice"] == {"lesion": {"operation": "min_size", "min_component_mm3": 100.0}}
    assert record["validation_subjects"] == ["s"] and record["validation_dice"]["after"] == {"lesion": 1.0,
                                                                                             "mean": 1.0}
    assert len(record["candidates"]) == 1 + len(CANDIDATES) + 1
    # The export's own removal of small components comes first: with it, nothing is left to gain.
    choose_postprocessing_on_validation(["s"], [tmp_path / "p.nii.gz"], [tmp_path / "label.nii.gz"], BINARY, 100.0,
                                        CANDIDATES, tmp_path / "after_export.yaml")
    assert yaml.safe_load((tmp_path / "after_export.yaml").read_text())["choice"] == {"lesion": {"operation": "none"}}

    write_nifti(tmp_path / "segmentation.nii.gz", BINARY.to_raw(prediction), affine)
    postprocess_subject(tmp_path / "segmentation.nii.gz", choice_path, BINARY, tmp_path / "pp.nii.gz")
    processed = read_image(tmp_path / "pp.nii.gz", dtype=None)
    assert (processed.data == truth).all() and np.allclose(processed.affine, affine)

    table = postprocessing_table({"net": record})
    assert table.loc[0, ["method", "region", "postprocessing", "n_validation"]].tolist() == [
        "net", "lesion", "components < 100 mm³ removed", 1]
    assert table.loc[0, "dice_after"] == 1.0 > table.loc[0, "dice_before"]


def config(crf=True, postprocessing=True):
    return {"datasets": {"d": {"models": ["a"], "ensembles": ["ab"]}}, "models": {"a": {}, "b": {}},
            "ensembles": {"ab": {"members": ["a", "b"]}}, "crf": {"enabled": crf},
            "postprocessing": {"enabled": postprocessing}}


def test_postprocessed_methods_follow_every_other_method():
    assert dataset_methods(config(), "d") == ["a", "b", "ab", "a+crf", "b+crf", "ab+crf",
                                              "a+pp", "b+pp", "ab+pp", "a+crf+pp", "b+crf+pp", "ab+crf+pp"]
    assert dataset_methods(config(), "d", postprocessing=False) == ["a", "b", "ab", "a+crf", "b+crf", "ab+crf"]
    assert dataset_methods(config(postprocessing=False), "d") == ["a", "b", "ab", "a+crf", "b+crf", "ab+crf"]
    assert dataset_methods(config(crf=False), "d") == ["a", "b", "ab", "a+pp", "b+pp", "ab+pp"]
    assert split_postprocessing("ab+crf+pp") == ("ab+crf", True) and split_postprocessing("a") == ("a", False)
    assert split_method("ab+crf+pp") == ("ab", True) and split_method("a+pp") == ("a", False)


def test_crf_pairs_ignore_postprocessed_methods():
    methods = dataset_methods(config(), "d")
    results = pd.DataFrame({"method": methods, "subject": "s", "region": "lesion", "dice": 0.5})
    assert crf_pairs(results) == [("a", "a+crf"), ("b", "b+crf"), ("ab", "ab+crf")]
