import numpy as np
import pytest

from lesionseg.labels import LABEL_SCHEMES, scheme_from_config


@pytest.mark.parametrize(
    "name, regions",
    [
        ("brats2013", {"WT": {1, 2, 3, 4}, "TC": {1, 3, 4}, "ET": {4}}),
        ("brats2021", {"WT": {1, 2, 4}, "TC": {1, 4}, "ET": {4}}),
        ("brats2023", {"WT": {1, 2, 3}, "TC": {1, 3}, "ET": {3}, "RC": {4}}),
        ("binary", {"lesion": {1}}),
    ],
)
def test_preset_regions_follow_the_releases(name, regions):
    assert {r: set(v) for r, v in LABEL_SCHEMES[name].regions.items()} == regions


def test_raw_to_classes_and_back():
    scheme = LABEL_SCHEMES["brats2021"]
    raw = np.array([0, 1, 2, 4, 4, 0], dtype=np.uint8)
    classes = scheme.to_classes(raw)
    np.testing.assert_array_equal(classes, [0, 1, 2, 3, 3, 0])
    np.testing.assert_array_equal(scheme.to_raw(classes), raw)
    assert scheme.n_classes == 4


def test_values_outside_the_scheme_are_refused():
    with pytest.raises(ValueError, match=r"label values \[3\] are not in scheme 'brats2021'"):
        LABEL_SCHEMES["brats2021"].to_classes(np.array([0, 3]))


def test_explicit_mapping_merges_values_and_defaults_regions():
    scheme = scheme_from_config({"classes": {"background": [0], "lesion": [1, 255]}})
    np.testing.assert_array_equal(scheme.to_classes(np.array([0, 1, 255])), [0, 1, 1])
    assert set(scheme.regions["lesion"]) == {1, 255}
    assert scheme.region_mask(np.array([0, 255, 1]), "lesion").tolist() == [False, True, True]


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"classes": {"lesion": [1], "background": [0]}}, "class 0 must be background"),
        ({"classes": {"background": [0], "a": [1], "b": [1]}}, "raw value 1 is in both"),
        ({"classes": {"background": [0], "a": [1]}, "regions": {"x": [7]}}, "region 'x' has values"),
        ("brats2099", "unknown label scheme"),
    ],
)
def test_bad_schemes_are_explained(spec, message):
    with pytest.raises(ValueError, match=message):
        scheme_from_config(spec)


def test_one_colour_per_class_and_region_declared_with_the_scheme():
    brats = LABEL_SCHEMES["brats2021"]
    assert brats.class_colours["enhancing"] == brats.region_colours["ET"]  # one tissue, one colour everywhere
    assert len(set(brats.region_colours.values())) == len(brats.regions)
    custom = scheme_from_config({"classes": {"background": [0], "a": [1], "b": [2]},
                                 "regions": {"all": [1, 2], "a": [1]}, "colours": {"b": "#123456"}})
    assert custom.region_colours["a"] == custom.class_colours["a"]  # a region of one class takes its colour
    assert custom.class_colours["b"] == "#123456"
    assert len({custom.class_colours["a"], custom.class_colours["b"], custom.region_colours["all"]}) == 3
    with pytest.raises(ValueError, match="neither classes nor regions"):
        scheme_from_config({"classes": {"background": [0], "a": [1]}, "colours": {"c": "#000000"}})


def test_complete_description_round_trips_and_the_plain_one_leaves_figures_out():
    brats = LABEL_SCHEMES["brats2023"]
    assert "colours" not in brats.describe()  # a colour changed re-runs no computation
    assert scheme_from_config(brats.describe(complete=True), name="brats2023") == brats
    assert scheme_from_config(brats.describe(), name="brats2023") == brats  # a preset keeps its own colours
    assert scheme_from_config({"classes": {"background": [0], "lesion": [1]},
                               "lesionwise": {"dilation_iterations": 2}}).lesionwise.dilation_iterations == 2


def test_best_modality_and_region_legend():
    brats = LABEL_SCHEMES["brats2013"]
    assert brats.best_modality("WT", ["t1", "t1c", "t2", "FLAIR"]) == "FLAIR"
    assert brats.best_modality("ET", ["t1", "t1ce", "t2", "flair"]) == "t1ce"
    assert brats.best_modality("ET", ["dwi", "adc"]) == "dwi"  # none of its modalities: the first one
    assert LABEL_SCHEMES["binary"].region_legend() == "Regions: lesion: label 1 lesion."
    assert "ET (enhancing tumour): label 4 enhancing" in brats.region_legend()
