"""Lesion-wise (BraTS 2023+) and lesion detection metrics: hand-made cases, a literal whole-volume version of the
BraTS algorithm, and panoptica (an independent implementation, the base of the BraTS 2024+ evaluation)."""

import dataclasses
import math
import os

import numpy as np
import pytest
from scipy import ndimage

from lesionseg.evaluation.lesionwise import (
    LESIONWISE_METRICS,
    component_structure,
    label_components,
    lesionwise_metrics,
    lesionwise_scores,
    merged_truth_lesions,
    region_lesionwise,
)
from lesionseg.evaluation.metrics import binary_metrics
from lesionseg.labels import BRATS_LESIONWISE, LABEL_SCHEMES, LesionwiseSettings

try:
    import panoptica
except ImportError:  # checked by the panoptica fixture: skipped here, a failure under CI=true
    panoptica = None

FP = 374.0
ANISOTROPIC = (1.0, 0.7, 2.5)
PLAIN = LesionwiseSettings()
SHAPE = (40, 40, 40)


def box(shape=SHAPE, *cubes):
    """A mask holding boxes given as (start, size) per axis: ((x0, y0, z0), (sx, sy, sz))."""
    mask = np.zeros(shape, bool)
    for start, size in cubes:
        mask[tuple(slice(s, s + n) for s, n in zip(start, size))] = True
    return mask


def cube(start, size=4):
    return (start, (size,) * 3)


def assert_rows_close(ours, theirs, tolerance):
    """Two sorted lists of per-lesion tuples agree, number by number."""
    assert len(ours) == len(theirs), (ours, theirs)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=0, atol=tolerance)


# -- hand-made cases -----------------------------------------------------------------------------------------------


def test_names_are_the_returned_keys_in_order():
    result = lesionwise_scores(box(SHAPE, cube((2, 2, 2))), box(SHAPE, cube((2, 2, 2))), (1.0, 1.0, 1.0))
    assert tuple(result) == LESIONWISE_METRICS
    assert all(isinstance(v, float) for v in result.values())


def test_one_lesion_found_one_missed_and_a_false_positive():
    truth = box(SHAPE, cube((2, 2, 2)), cube((20, 20, 20), 3))
    prediction = box(SHAPE, cube((2, 2, 2)), cube((30, 5, 5), 2))  # the first lesion exactly, a far 2^3 cube
    result = lesionwise_metrics(prediction, truth, (1.0, 1.0, 1.0))
    assert [(lesion.voxels, lesion.dice, lesion.hd95, lesion.detected) for lesion in result.lesions] == [
        (64, 1.0, 0.0, True), (27, 0.0, FP, False)]
    assert len(result.false_positives) == 1
    scores = result.scores()
    assert scores["lesionwise_dice"] == pytest.approx((1 + 0 + 0) / 3)
    assert scores["lesionwise_hd95"] == pytest.approx((0 + FP + FP) / 3)
    assert (scores["truth_lesions"], scores["predicted_lesions"], scores["detected_lesions"],
            scores["missed_lesions"], scores["false_positive_lesions"]) == (2, 2, 1, 1, 1)
    assert scores["lesion_f1"] == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))
    assert scores["absolute_volume_difference_mm3"] == abs((64 + 8) - (64 + 27))


def test_partial_overlap_scores_the_lesion_against_its_match():
    truth = box(SHAPE, cube((5, 5, 5)))
    prediction = np.roll(truth, 1, axis=0)  # 3 of 4 slabs overlap: Dice 2 * 48 / 128
    scores = lesionwise_scores(prediction, truth, ANISOTROPIC)
    assert scores["lesionwise_dice"] == pytest.approx(0.75)
    # One lesion, no false positive: the lesion-wise values are the lesion's, HD95 that of the legacy metric.
    assert scores["lesionwise_hd95"] == pytest.approx(binary_metrics(prediction, truth, ANISOTROPIC)["hd95"])
    assert scores["lesion_f1"] == 1.0 and scores["absolute_volume_difference_mm3"] == 0.0


def test_one_prediction_matching_two_lesions_counts_for_both():
    truth = box(SHAPE, cube((5, 5, 5)), cube((5, 15, 5)))
    prediction = box(SHAPE, ((5, 5, 5), (4, 14, 4)))  # a bar over both cubes and the 6 slabs between them
    result = lesionwise_metrics(prediction, truth, (1.0, 1.0, 1.0))
    assert [lesion.matches for lesion in result.lesions] == [(1,), (1,)]
    bar = 4 * 14 * 4
    assert [lesion.dice for lesion in result.lesions] == pytest.approx([2 * 64 / (64 + bar)] * 2)
    scores = result.scores()
    assert (scores["detected_lesions"], scores["false_positive_lesions"], scores["predicted_lesions"]) == (2, 0, 1)
    assert scores["lesionwise_dice"] == pytest.approx(2 * 64 / (64 + bar))


@pytest.mark.parametrize(("gap", "merged"), [(4, True), (6, True), (7, False)])
def test_lesions_merge_when_their_dilations_touch(gap, merged):
    # Two 4^3 cubes ``gap`` empty slabs apart along axis 0; each dilation (3 steps) reaches 3 slabs out, so the
    # dilations overlap for a gap under 6, are adjacent (one 26-connected component) at 6, apart at 7.
    truth = box(SHAPE, cube((5, 5, 5)), cube((9 + gap, 5, 5)))
    prediction = box(SHAPE, cube((5, 5, 5)))  # the first cube only
    settings = LesionwiseSettings(dilation_iterations=3)
    result = lesionwise_metrics(prediction, truth, (1.0, 1.0, 1.0), settings)
    scores = result.scores()
    if merged:
        assert [lesion.voxels for lesion in result.lesions] == [128]
        assert scores["lesionwise_dice"] == pytest.approx(2 * 64 / (128 + 64))
        assert scores["lesionwise_hd95"] == pytest.approx(binary_metrics(prediction, truth, (1.0, 1.0, 1.0))["hd95"])
        assert (scores["truth_lesions"], scores["detected_lesions"], scores["missed_lesions"]) == (1, 1, 0)
    else:
        assert [lesion.voxels for lesion in result.lesions] == [64, 64]
        assert scores["lesionwise_dice"] == pytest.approx(0.5)
        assert scores["lesionwise_hd95"] == pytest.approx(FP / 2)
        assert (scores["truth_lesions"], scores["detected_lesions"], scores["missed_lesions"]) == (2, 1, 1)
    # Without dilation the cubes are always two lesions.
    assert lesionwise_scores(prediction, truth, (1.0, 1.0, 1.0))["truth_lesions"] == 2


def test_a_prediction_in_the_dilation_only_is_a_match_not_a_false_positive():
    truth = box(SHAPE, cube((10, 10, 10)))
    prediction = box(SHAPE, cube((16, 10, 10), 1))  # 2 empty slabs beyond the cube's face
    dilated = lesionwise_scores(prediction, truth, (1.0, 1.0, 1.0), LesionwiseSettings(dilation_iterations=3))
    assert (dilated["detected_lesions"], dilated["false_positive_lesions"]) == (1, 0)
    assert dilated["lesionwise_dice"] == 0.0  # matched, but no voxel in common
    assert dilated["lesionwise_hd95"] == pytest.approx(binary_metrics(prediction, truth, (1.0, 1.0, 1.0))["hd95"])
    plain = lesionwise_scores(prediction, truth, (1.0, 1.0, 1.0))
    assert (plain["detected_lesions"], plain["missed_lesions"], plain["false_positive_lesions"]) == (0, 1, 1)
    assert plain["lesionwise_dice"] == 0.0 and plain["lesionwise_hd95"] == FP


def test_small_truth_lesions_are_left_out_but_their_matches_are_no_false_positives():
    # BraTS settings: lesions of at most 50 voxels are not scored. All lesions are far apart (no merging).
    big = cube((2, 2, 2))                      # 64 voxels, predicted exactly
    small = cube((2, 30, 2), 3)                # 27 voxels, predicted exactly
    fifty = ((30, 2, 2), (5, 5, 2))            # 50 voxels, missed: not scored
    fifty_one = ((20, 20, 30), (3, 17, 1))     # 51 voxels, missed: scored
    truth = box(SHAPE, big, small, fifty, fifty_one)
    prediction = box(SHAPE, big, small)
    result = lesionwise_metrics(prediction, truth, (1.0, 1.0, 1.0), BRATS_LESIONWISE)
    assert sorted((lesion.voxels, lesion.scored) for lesion in result.lesions) == [
        (27, False), (50, False), (51, True), (64, True)]
    scores = result.scores()
    assert scores["lesionwise_dice"] == pytest.approx((1 + 0) / 2)
    assert scores["lesionwise_hd95"] == pytest.approx((0 + FP) / 2)
    assert (scores["truth_lesions"], scores["predicted_lesions"], scores["detected_lesions"],
            scores["missed_lesions"], scores["false_positive_lesions"]) == (2, 2, 1, 1, 0)
    assert scores["lesion_f1"] == pytest.approx(2 / 3)
    assert scores["absolute_volume_difference_mm3"] == 50 + 51
    # Only small lesions, none predicted: nothing is scored, which is perfect (BraTS).
    only_small = box(SHAPE, small)
    empty = np.zeros(SHAPE, bool)
    scores = lesionwise_scores(empty, only_small, (1.0, 1.0, 1.0), BRATS_LESIONWISE)
    assert (scores["lesionwise_dice"], scores["lesionwise_hd95"], scores["truth_lesions"], scores["lesion_f1"]) == (
        1.0, 0.0, 0.0, 1.0)


def test_empty_truth_empty_prediction_and_both_empty():
    empty = np.zeros(SHAPE, bool)
    lesions = box(SHAPE, cube((2, 2, 2)), cube((20, 20, 20), 2))
    voxel = math.prod(ANISOTROPIC)
    no_truth = lesionwise_scores(lesions, empty, ANISOTROPIC)
    assert no_truth == {"lesionwise_dice": 0.0, "lesionwise_hd95": FP, "truth_lesions": 0.0,
                        "predicted_lesions": 2.0, "detected_lesions": 0.0, "missed_lesions": 0.0,
                        "false_positive_lesions": 2.0, "lesion_f1": 0.0,
                        "absolute_volume_difference_mm3": pytest.approx(72 * voxel)}
    no_prediction = lesionwise_scores(empty, lesions, ANISOTROPIC)
    assert no_prediction == {"lesionwise_dice": 0.0, "lesionwise_hd95": FP, "truth_lesions": 2.0,
                             "predicted_lesions": 0.0, "detected_lesions": 0.0, "missed_lesions": 2.0,
                             "false_positive_lesions": 0.0, "lesion_f1": 0.0,
                             "absolute_volume_difference_mm3": pytest.approx(72 * voxel)}
    both = lesionwise_scores(empty, empty, ANISOTROPIC, BRATS_LESIONWISE)
    assert both == {**dict.fromkeys(LESIONWISE_METRICS, 0.0), "lesionwise_dice": 1.0, "lesion_f1": 1.0}
    custom = lesionwise_scores(lesions, empty, ANISOTROPIC, LesionwiseSettings(false_positive_hd95_mm=100.0))
    assert custom["lesionwise_hd95"] == 100.0


def test_anisotropic_spacing_distances_in_mm_dilation_in_voxels():
    # One truth voxel; a predicted voxel 2 voxels along axis 0 and 1 along axis 2 (reached by 2 steps of the
    # 18-connected dilation), another 4 voxels along axis 0 (not reached by 3 steps).
    truth = np.zeros(SHAPE, bool)
    truth[10, 10, 10] = True
    prediction = np.zeros(SHAPE, bool)
    prediction[12, 10, 11] = True
    prediction[14, 10, 10] = True
    settings = LesionwiseSettings(dilation_iterations=3)
    result = lesionwise_metrics(prediction, truth, ANISOTROPIC, settings)
    distance = math.hypot(2 * ANISOTROPIC[0], 1 * ANISOTROPIC[2])
    (lesion,) = result.lesions
    assert lesion.dice == 0.0 and lesion.hd95 == pytest.approx(distance)
    scores = result.scores()
    assert scores["lesionwise_dice"] == 0.0
    assert scores["lesionwise_hd95"] == pytest.approx((distance + FP) / 2)
    assert (scores["detected_lesions"], scores["false_positive_lesions"]) == (1, 1)
    assert scores["lesion_f1"] == pytest.approx(2 / 3)
    assert scores["absolute_volume_difference_mm3"] == pytest.approx(math.prod(ANISOTROPIC))
    # 3 diagonal steps (1, 1, 0) reach 3 voxels along two axes at once; 3 along all three need more.
    for offset, reached in (((3, 3, 0), True), ((3, 3, 3), False)):
        far = np.zeros(SHAPE, bool)
        far[tuple(10 + o for o in offset)] = True
        assert lesionwise_scores(far, truth, ANISOTROPIC, settings)["detected_lesions"] == float(reached)


def test_connectivity():
    corner = np.zeros(SHAPE, bool)
    corner[5, 5, 5] = corner[6, 6, 6] = True  # touching by a corner only
    assert lesionwise_scores(corner, corner, (1.0, 1.0, 1.0))["predicted_lesions"] == 1
    assert lesionwise_scores(corner, corner, (1.0, 1.0, 1.0),
                             LesionwiseSettings(connectivity=6))["predicted_lesions"] == 2
    assert lesionwise_scores(corner, corner, (1.0, 1.0, 1.0),
                             LesionwiseSettings(connectivity=18))["predicted_lesions"] == 2
    assert component_structure(2, 8).sum() == 9 and component_structure(3, 18).sum() == 19
    with pytest.raises(ValueError, match=r"connectivity 10 is not one of \[6, 18, 26\]"):
        lesionwise_scores(corner, corner, (1.0, 1.0, 1.0), LesionwiseSettings(connectivity=10))
    with pytest.raises(ValueError, match="differ in shape"):
        lesionwise_scores(corner, corner[:, :, :5], (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="finite and positive"):
        lesionwise_scores(corner, corner, (1.0, 0.0, 1.0))


def test_2d_masks():
    truth = np.zeros((30, 30), bool)
    truth[2:6, 2:6] = True
    truth[20:24, 20:24] = True
    prediction = np.zeros_like(truth)
    prediction[2:6, 2:6] = True
    scores = lesionwise_scores(prediction, truth, (0.5, 2.0), LesionwiseSettings(connectivity=8))
    assert scores["lesionwise_dice"] == 0.5 and scores["lesionwise_hd95"] == FP / 2
    assert scores["absolute_volume_difference_mm3"] == 16.0


def test_regions_use_the_schemes_settings():
    scheme = LABEL_SCHEMES["brats2021"]
    truth = np.zeros(SHAPE, np.uint8)
    truth[5:15, 5:15, 5:15] = 2
    truth[8:12, 8:12, 8:12] = 4  # 64 voxels of enhancing tumour
    truth[30:33, 30:33, 30:33] = 4  # a 27-voxel enhancing lesion: not scored under BraTS settings
    prediction = truth.copy()
    prediction[30:33, 30:33, 30:33] = 0
    result = region_lesionwise(prediction, truth, scheme, (1.0, 1.0, 1.0))
    assert list(result) == ["WT", "TC", "ET"]
    assert result["ET"]["truth_lesions"] == 1 and result["ET"]["lesionwise_dice"] == 1.0
    plain = region_lesionwise(prediction, truth, dataclasses.replace(scheme, lesionwise=PLAIN), (1.0, 1.0, 1.0))
    assert plain["ET"]["truth_lesions"] == 2 and plain["ET"]["lesionwise_dice"] == 0.5
    with pytest.raises(ValueError, match="label maps differ in shape"):
        region_lesionwise(prediction, truth[:, :, :3], scheme, (1.0, 1.0, 1.0))


def test_a_brats_sized_case_with_many_stray_components():
    rng = np.random.default_rng(0)
    shape = (240, 240, 155)
    truth = np.zeros(shape, bool)
    grid = np.ogrid[:shape[0], :shape[1], :shape[2]]
    for _ in range(20):
        c = rng.uniform(20, 130, 3)
        truth |= sum((g - x) ** 2 for g, x in zip(grid, c)) <= rng.uniform(2, 12) ** 2
    prediction = np.roll(truth, 1, axis=0) | (rng.random(shape) > 0.99995)  # about 450 stray voxels
    scores = lesionwise_scores(prediction, truth, (1.0, 1.0, 1.0), BRATS_LESIONWISE)
    assert scores["false_positive_lesions"] > 300 and scores["detected_lesions"] == scores["truth_lesions"]


# -- random cases: a literal whole-volume version of the BraTS algorithm --------------------------------------------

GRID = np.indices(SHAPE, dtype=np.float32)


def ellipsoid(centre, radii):
    return sum(((g - c) / r) ** 2 for g, c, r in zip(GRID, centre, radii)) <= 1.0


def random_case(seed, separation=0.0):
    """Six truth ellipsoids (centres at least ``separation`` voxels beyond their radii apart), each predicted
    shifted and scaled, split in two, or missed; plus three stray predicted ellipsoids."""
    rng = np.random.default_rng(seed)
    truth = np.zeros(SHAPE, bool)
    prediction = np.zeros(SHAPE, bool)
    placed = []
    for _ in range(200):
        if len(placed) == 6:
            break
        centre, radii = rng.uniform(4, 36, 3), rng.uniform(1.5, 5, 3)
        if any(np.linalg.norm(centre - c) < r + radii.max() + separation for c, r in placed):
            continue
        placed.append((centre, radii.max()))
        truth |= ellipsoid(centre, radii)
        draw = rng.random()
        if draw < 0.6:
            prediction |= ellipsoid(centre + rng.uniform(-2, 2, 3), radii * rng.uniform(0.7, 1.3, 3))
        elif draw < 0.8:
            for side in (-1, 1):
                prediction |= ellipsoid(centre + side * radii * np.array([0.6, 0, 0]), radii * 0.45)
    for _ in range(3):
        prediction |= ellipsoid(rng.uniform(2, 38, 3), rng.uniform(0.8, 3, 3))
    return prediction, truth


def brats_reference(prediction, truth, spacing, settings):
    """The BraTS 2023 algorithm as its code does it, in whole-volume passes: label the truth, dilate it, label the
    dilation, merge, then per merged lesion dilate that lesion alone and collect the predicted components it
    touches; every component not collected is a false positive."""
    full = ndimage.generate_binary_structure(3, 3)
    truth_cc, _ = ndimage.label(truth, full)
    dilation = ndimage.generate_binary_structure(3, 2)
    k = settings.dilation_iterations
    dilated_cc, n_dilated = ndimage.label(ndimage.binary_dilation(truth, dilation, k) if k else truth, full)
    merged = np.zeros_like(truth_cc)
    for comp in range(1, n_dilated + 1):
        merged[(dilated_cc == comp) & (truth_cc > 0)] = comp
    predicted_cc, n_predicted = ndimage.label(prediction, full)
    hit, lesions = set(), []
    for comp in range(1, n_dilated + 1):
        lesion = merged == comp
        own = ndimage.binary_dilation(lesion, dilation, k) if k else lesion
        touching = set(np.unique(predicted_cc[own]).tolist()) - {0}
        hit |= touching
        matched = np.isin(predicted_cc, sorted(touching))
        values = binary_metrics(matched, lesion, spacing, empty_distance_mm=settings.false_positive_hd95_mm)
        lesions.append((int(lesion.sum()), values["dice"], values["hd95"], bool(touching)))
    n_fp = n_predicted - len(hit)
    scored = [lesion for lesion in lesions if lesion[0] > settings.min_truth_voxels]
    denominator = len(scored) + n_fp
    return {
        "lesions": sorted(lesions),
        "lesionwise_dice": 1.0 if denominator == 0 else sum(s[1] for s in scored) / denominator,
        "lesionwise_hd95": 0.0 if denominator == 0 else (sum(s[2] for s in scored) + n_fp * FP) / denominator,
        "truth_lesions": len(scored),
        "detected_lesions": sum(s[3] for s in scored),
        "false_positive_lesions": n_fp,
        "predicted_lesions": n_predicted,
    }


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("settings", [PLAIN, BRATS_LESIONWISE, LesionwiseSettings(dilation_iterations=1,
                                                                                 min_truth_voxels=100)],
                         ids=["plain", "brats", "dilation1-min100"])
def test_random_cases_agree_with_the_whole_volume_algorithm(seed, settings):
    # No separation: lesions merge through the dilation, predictions match several lesions, and (min 100) some
    # lesions are too small to be scored.
    spacing = ANISOTROPIC if seed % 2 else (1.0, 1.0, 1.0)
    prediction, truth = random_case(seed)
    ours = lesionwise_metrics(prediction, truth, spacing, settings)
    expected = brats_reference(prediction, truth, spacing, settings)
    assert_rows_close(sorted((lesion.voxels, lesion.dice, lesion.hd95, lesion.detected) for lesion in ours.lesions
                             if lesion.scored),
                      [lesion for lesion in expected["lesions"] if lesion[0] > settings.min_truth_voxels], 1e-9)
    scores = ours.scores()
    for name in ("lesionwise_dice", "lesionwise_hd95", "truth_lesions", "detected_lesions",
                 "false_positive_lesions", "predicted_lesions"):
        assert scores[name] == pytest.approx(expected[name], abs=1e-9), name


def test_merging_helper_labels_the_dilated_truth():
    truth = box(SHAPE, cube((5, 5, 5)), cube((13, 5, 5)), cube((30, 30, 30)))
    labels, n = merged_truth_lesions(truth, 3)
    assert n == 2 and labels[5, 5, 5] == labels[13, 5, 5] != labels[30, 30, 30]
    assert labels[2, 5, 5] > 0 and labels[1, 5, 5] == 0  # the dilation reaches 3 voxels out
    assert label_components(truth)[1] == 3 and merged_truth_lesions(truth, 0)[1] == 3
    with pytest.raises(ValueError, match="0 or more"):
        merged_truth_lesions(truth, -1)


# -- random cases: panoptica ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def panoptica_evaluator():
    """A panoptica evaluator doing the BraTS matching where the two agree: 26-connected components (cc3d), every
    predicted component overlapping a truth lesion matched to it (IoU > 0, many to one), DSC and HD95 per lesion."""
    if panoptica is None:
        reason = "panoptica is not installed (make test installs it): panoptica cross-check skipped"
        if os.environ.get("CI") == "true":
            pytest.fail(reason + ", but it must run under CI=true")
        pytest.skip(reason)
    from panoptica import (CCABackend, ConnectedComponentsInstanceApproximator, InputType, Metric,
                           NaiveThresholdMatching, Panoptica_Evaluator, disable_citation_reminder)

    disable_citation_reminder()
    return Panoptica_Evaluator(
        expected_input=InputType.SEMANTIC,
        instance_approximator=ConnectedComponentsInstanceApproximator(cca_backend=CCABackend.cc3d),
        instance_matcher=NaiveThresholdMatching(matching_metric=Metric.IOU, matching_threshold=0.0,
                                                strict_threshold=True, allow_many_to_one=True),
        instance_metrics=[Metric.DSC, Metric.HD95],
        global_metrics=[Metric.DSC],
    )


def agreeing_case(seed, settings):
    """A random case on which BraTS and panoptica's matching must agree: no truth lesion at or under the threshold,
    no two truth lesions merged by the dilation, and every predicted component either off every lesion's dilation
    or overlapping exactly one lesion itself (the dilation ring is no match in panoptica)."""
    prediction, truth = random_case(seed, separation=2 * settings.dilation_iterations + 2)
    labels, n = label_components(truth, settings.connectivity)
    truth &= np.bincount(labels.ravel(), minlength=n + 1)[labels] > settings.min_truth_voxels
    merged, n_merged = merged_truth_lesions(truth, settings.dilation_iterations, settings.connectivity)
    labels, _ = label_components(truth, settings.connectivity)
    for k in range(1, n_merged + 1):
        if np.unique(labels[(merged == k) & truth]).size > 1:
            truth &= merged != k
    merged, _ = merged_truth_lesions(truth, settings.dilation_iterations, settings.connectivity)
    predicted, n_predicted = label_components(prediction, settings.connectivity)
    keep = np.zeros(n_predicted + 1, bool)
    for p, where in enumerate(ndimage.find_objects(predicted), start=1):
        component = predicted[where] == p
        touched = np.unique(merged[where][component])
        touched = touched[touched > 0]
        keep[p] = touched.size == 0 or (touched.size == 1 and truth[where][component].any())
    return prediction & keep[predicted], truth


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("settings", [PLAIN, BRATS_LESIONWISE], ids=["plain", "brats"])
def test_random_cases_agree_with_panoptica(panoptica_evaluator, seed, settings):
    import cc3d  # panoptica's connected components, installed with it

    spacing = ANISOTROPIC if seed % 2 else (1.0, 1.0, 1.0)
    prediction, truth = agreeing_case(seed, settings)
    ours = lesionwise_metrics(prediction, truth, spacing, settings)
    result = panoptica_evaluator.evaluate(prediction.astype(np.uint8), truth.astype(np.uint8),
                                          voxelspacing=spacing)["ungrouped"]
    rows = result.to_dict(output_individual_instance_metrics=True)["reference_instances"]
    theirs = sorted((row["voxel_count"], float(row["sq_dsc"]), float(row["sq_hd95"])) if row["is_matched"]
                    else (row["voxel_count"], 0.0, FP) for row in rows)
    assert_rows_close(sorted((lesion.voxels, lesion.dice, lesion.hd95) for lesion in ours.lesions), theirs, 1e-6)
    scores = ours.scores()
    assert (scores["truth_lesions"], scores["detected_lesions"], scores["missed_lesions"],
            scores["false_positive_lesions"]) == (result.n_ref_instances, result.tp, result.fn, result.fp)
    assert scores["predicted_lesions"] == cc3d.connected_components(prediction, connectivity=26, return_N=True)[1]
    # The case-level BraTS values from panoptica's per-lesion values: false positives score 0 and 374.
    denominator = len(theirs) + result.fp
    assert scores["lesionwise_dice"] == pytest.approx(sum(d for _, d, _ in theirs) / denominator, abs=1e-6)
    assert scores["lesionwise_hd95"] == pytest.approx((sum(h for _, _, h in theirs) + result.fp * FP) / denominator,
                                                      abs=1e-6)
    assert len(theirs) >= 2 and result.tp >= 1  # the case exercises the matching
