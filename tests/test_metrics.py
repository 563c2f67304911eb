"""Segmentation metrics, cross-checked against medpy (an independent implementation)."""

import math

import numpy as np
import pytest
from medpy.metric import binary as medpy_binary
from scipy import ndimage

from lesionseg.evaluation.metrics import (
    EMPTY_CASE_DISTANCE_MM,
    METRICS,
    _surface,
    _surface_distances,
    binary_metrics,
    dice,
    region_dice,
    region_metrics,
    segmentation_volumes,
)
from lesionseg.labels import LABEL_SCHEMES
from lesionseg.masks import bounding_box

ANISOTROPIC_3D = (1.0, 0.7, 2.5)
ANISOTROPIC_2D = (0.8, 1.9)


def blobs(shape, seed, fraction=0.1, sigma=2.0):
    """A random mask of smooth blobs covering about ``fraction`` of the grid."""
    field = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=shape), sigma)
    return field > np.quantile(field, 1 - fraction)


def perturbed(mask, seed):
    """A prediction close to ``mask``: dilated or eroded, shifted, with a few stray voxels."""
    rng = np.random.default_rng(seed)
    out = ndimage.binary_dilation(mask) if seed % 2 else ndimage.binary_erosion(mask)
    out = np.roll(out, int(rng.integers(-2, 3)), axis=0)
    out |= rng.random(mask.shape) > 0.999
    return out


def medpy_metrics(prediction, truth, spacing):
    return {
        "dice": medpy_binary.dc(prediction, truth),
        "sensitivity": medpy_binary.sensitivity(prediction, truth),
        "specificity": medpy_binary.specificity(prediction, truth),
        "precision": medpy_binary.precision(prediction, truth),
        "hd95": medpy_binary.hd95(prediction, truth, voxelspacing=spacing),
        "assd": medpy_binary.assd(prediction, truth, voxelspacing=spacing),
        "hausdorff": medpy_binary.hd(prediction, truth, voxelspacing=spacing),
    }


def assert_agrees_with_medpy(prediction, truth, spacing):
    ours = binary_metrics(prediction, truth, spacing)
    theirs = medpy_metrics(prediction, truth, spacing)
    for name, value in theirs.items():
        assert ours[name] == pytest.approx(value, abs=1e-6), name
    voxel = math.prod(spacing)
    assert ours["volume_truth_mm3"] == pytest.approx(truth.sum() * voxel)
    assert ours["volume_prediction_mm3"] == pytest.approx(prediction.sum() * voxel)
    assert ours["volume_difference_mm3"] == pytest.approx((int(prediction.sum()) - int(truth.sum())) * voxel)
    assert ours["tp"] == (prediction & truth).sum()
    assert ours["fp"] == (prediction & ~truth).sum()
    assert ours["fn"] == (~prediction & truth).sum()
    return ours


def test_metric_names_are_the_returned_keys_in_order():
    result = binary_metrics(np.ones((3, 3), bool), np.ones((3, 3), bool), (1.0, 1.0))
    assert tuple(result) == METRICS
    assert all(isinstance(v, float) for v in result.values())


def test_empty_case_distance_is_the_brats_box_diagonal():
    assert EMPTY_CASE_DISTANCE_MM == pytest.approx(math.sqrt(240**2 + 240**2 + 155**2), abs=0.005)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), ANISOTROPIC_3D])
def test_random_blobs_3d_agree_with_medpy(seed, spacing):
    truth = blobs((40, 36, 24), seed)
    assert_agrees_with_medpy(perturbed(truth, seed + 100), truth, spacing)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("spacing", [(1.0, 1.0), ANISOTROPIC_2D])
def test_random_blobs_2d_agree_with_medpy(seed, spacing):
    truth = blobs((70, 50), seed, fraction=0.15)
    assert_agrees_with_medpy(perturbed(truth, seed + 7), truth, spacing)


@pytest.mark.parametrize("seed", range(3))
def test_independent_masks_touching_the_grid_edges_agree_with_medpy(seed):
    # Unrelated masks reaching the grid's faces: checks the surface at the grid's edge and a crop of the whole grid.
    truth = blobs((30, 30, 20), seed, fraction=0.3, sigma=1.5)
    prediction = blobs((30, 30, 20), seed + 50, fraction=0.3, sigma=1.5)
    assert_agrees_with_medpy(prediction, truth, ANISOTROPIC_3D)


def test_surface_is_medpy_erosion_border():
    mask = blobs((25, 22, 18), 3, fraction=0.4, sigma=1.0)
    cross = ndimage.generate_binary_structure(3, 1)
    expected = mask ^ ndimage.binary_erosion(mask, structure=cross, iterations=1)
    np.testing.assert_array_equal(_surface(mask), expected)
    np.testing.assert_array_equal(_surface(np.ones((1, 4), bool)), np.ones((1, 4), bool))


def test_offset_cubes_by_hand():
    # Two k-voxel cubes, the prediction shifted by d voxels along axis 0.
    k, d = 6, 2
    spacing = ANISOTROPIC_3D
    truth = np.zeros((20, 20, 20), bool)
    truth[5 : 5 + k, 5 : 5 + k, 5 : 5 + k] = True
    prediction = np.roll(truth, d, axis=0)
    result = assert_agrees_with_medpy(prediction, truth, spacing)
    voxel = math.prod(spacing)
    assert result["dice"] == pytest.approx((k - d) / k)
    assert result["sensitivity"] == pytest.approx((k - d) / k)
    assert result["precision"] == pytest.approx((k - d) / k)
    assert result["tp"] == (k - d) * k * k and result["fp"] == result["fn"] == d * k * k
    assert result["specificity"] == pytest.approx(1 - d * k * k / (20**3 - k**3))
    # Every face voxel at the trailing end of one cube is d voxels along axis 0 from the other's surface, no
    # surface voxel is farther.
    assert result["hausdorff"] == pytest.approx(d * spacing[0])
    assert result["volume_truth_mm3"] == pytest.approx(k**3 * voxel)
    assert result["volume_prediction_mm3"] == pytest.approx(k**3 * voxel)
    assert result["volume_difference_mm3"] == 0.0


def test_single_voxels_by_hand():
    spacing = ANISOTROPIC_3D
    truth = np.zeros((10, 10, 10), bool)
    prediction = np.zeros_like(truth)
    truth[2, 3, 4] = True
    prediction[5, 3, 2] = True
    distance = math.hypot(3 * spacing[0], 2 * spacing[2])
    result = assert_agrees_with_medpy(prediction, truth, spacing)
    assert result["dice"] == 0.0
    assert result["hd95"] == pytest.approx(distance)
    assert result["assd"] == pytest.approx(distance)
    assert result["hausdorff"] == pytest.approx(distance)


def test_hd95_pools_both_directions():
    # The prediction is the truth square plus a far 3x3 blob: 8 of its 124 surface voxels (6.5%) are far from the
    # truth, so its directed 95th percentile is large, but they are 8 of the 240 pooled distances (3.3%), so the
    # pooled 95th percentile (medpy's hd95, ours) is 0. The max of the directed 95th percentiles is never smaller.
    truth = np.zeros((60, 60), bool)
    truth[5:35, 5:35] = True
    prediction = truth.copy()
    prediction[50:53, 50:53] = True
    spacing = (1.0, 1.0)
    result = binary_metrics(prediction, truth, spacing)
    from_prediction, from_truth = _surface_distances(prediction, truth, spacing)
    assert (from_prediction.size, from_truth.size) == (124, 116)
    directed = max(np.percentile(from_prediction, 95), np.percentile(from_truth, 95))
    assert result["hd95"] == 0.0
    assert result["hd95"] == pytest.approx(medpy_binary.hd95(prediction, truth, voxelspacing=spacing))
    assert directed > 10.0
    assert result["hausdorff"] == pytest.approx(math.hypot(18, 18))


def test_bounding_box_restriction_matches_the_whole_grid():
    truth = np.zeros((60, 50, 40), bool)
    truth[20:40, 10:30, 12:28] = blobs((20, 20, 16), 1, fraction=0.5, sigma=1.5)
    prediction = np.roll(ndimage.binary_dilation(truth), 2, axis=1)
    prediction[45, 35, 30] = True  # a stray voxel, inside the grid
    box = bounding_box(prediction | truth, 1)
    assert np.prod([s.stop - s.start for s in box]) < truth.size / 2  # the crop is much smaller than the grid
    for a, b in [(prediction, truth), (truth, prediction)]:
        cropped = _surface_distances(a, b, ANISOTROPIC_3D, crop=True)
        whole = _surface_distances(a, b, ANISOTROPIC_3D, crop=False)
        for c, w in zip(cropped, whole):
            np.testing.assert_allclose(c, w, atol=1e-9)
    # The same masks embedded in a larger empty grid: same metrics, except more true negatives.
    small = binary_metrics(prediction, truth, ANISOTROPIC_3D)
    big = binary_metrics(np.pad(prediction, 30), np.pad(truth, 30), ANISOTROPIC_3D)
    for name in METRICS:
        if name != "specificity":
            assert big[name] == pytest.approx(small[name], abs=1e-9), name


def test_both_empty_is_perfect():
    empty = np.zeros((8, 9, 10), bool)
    result = binary_metrics(empty, empty, ANISOTROPIC_3D)
    assert result == {
        **dict.fromkeys(METRICS, 0.0),
        "dice": 1.0,
        "sensitivity": 1.0,
        "specificity": 1.0,
        "precision": 1.0,
    }


@pytest.mark.parametrize("empty_side", ["prediction", "truth"])
def test_one_empty_is_a_failure(empty_side):
    mask = np.zeros((8, 9, 10), bool)
    mask[2:5, 3:6, 4:6] = True
    empty = np.zeros_like(mask)
    prediction, truth = (empty, mask) if empty_side == "prediction" else (mask, empty)
    result = binary_metrics(prediction, truth, ANISOTROPIC_3D)
    assert result["dice"] == 0.0
    assert result["sensitivity"] == 0.0
    assert result["precision"] == 0.0
    assert result["hd95"] == result["assd"] == result["hausdorff"] == EMPTY_CASE_DISTANCE_MM
    voxel = math.prod(ANISOTROPIC_3D)
    n = int(mask.sum())
    assert result["volume_difference_mm3"] == pytest.approx((n if empty_side == "truth" else -n) * voxel)
    # Where medpy's ratio is defined, it agrees.
    assert result["specificity"] == pytest.approx(medpy_binary.specificity(prediction, truth))
    custom = binary_metrics(prediction, truth, ANISOTROPIC_3D, empty_distance_mm=50.0)
    assert custom["hd95"] == custom["assd"] == custom["hausdorff"] == 50.0


def test_truth_filling_the_grid():
    full = np.ones((4, 5), bool)
    partial = full.copy()
    partial[0, 0] = False
    assert binary_metrics(full, full, (1.0, 1.0))["specificity"] == 1.0
    assert binary_metrics(partial, full, (1.0, 1.0))["specificity"] == 0.0
    assert binary_metrics(partial, full, (1.0, 1.0))["sensitivity"] == pytest.approx(19 / 20)


def test_non_boolean_masks_count_non_zero_as_inside():
    truth = np.zeros((10, 10), np.uint8)
    truth[2:6, 2:6] = 7
    prediction = np.zeros((10, 10), np.float32)
    prediction[3:7, 2:6] = 0.5
    assert binary_metrics(prediction, truth, (1.0, 1.0)) == binary_metrics(prediction != 0, truth != 0, (1.0, 1.0))


def test_shape_mismatch_and_bad_spacing_are_refused():
    with pytest.raises(ValueError, match=r"differ in shape: prediction \(4, 5\), truth \(5, 4\)"):
        binary_metrics(np.zeros((4, 5), bool), np.zeros((5, 4), bool), (1.0, 1.0))
    scheme = LABEL_SCHEMES["brats2021"]
    with pytest.raises(ValueError, match="label maps differ in shape"):
        region_metrics(np.zeros((4, 5, 6), np.uint8), np.zeros((4, 5, 7), np.uint8), scheme, (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="differ in shape"):
        region_dice(np.zeros((4, 5), np.uint8), np.zeros((4, 6), np.uint8), scheme)
    with pytest.raises(ValueError, match="has 2 values for 3-dimensional"):
        binary_metrics(np.zeros((4, 5, 6), bool), np.zeros((4, 5, 6), bool), (1.0, 1.0))
    with pytest.raises(ValueError, match="finite and positive"):
        binary_metrics(np.zeros((4, 5), bool), np.zeros((4, 5), bool), (1.0, 0.0))


def brats2021_case():
    """Truth: an edema cube holding a necrosis cube holding an enhancing cube; prediction as the truth with the
    enhancing voxels labelled necrosis and one spurious edema voxel far away."""
    truth = np.zeros((30, 30, 20), np.uint8)
    truth[5:15, 5:15, 5:15] = 2
    truth[8:12, 8:12, 8:12] = 1
    truth[9:11, 9:11, 9:11] = 4
    prediction = truth.copy()
    prediction[prediction == 4] = 1
    prediction[25, 25, 18] = 2
    return prediction, truth


def test_region_metrics_brats_known_answers():
    scheme = LABEL_SCHEMES["brats2021"]
    spacing = (1.0, 1.0, 2.0)
    prediction, truth = brats2021_case()
    result = region_metrics(prediction, truth, scheme, spacing)
    assert list(result) == ["WT", "TC", "ET"]
    assert all(tuple(values) == METRICS for values in result.values())

    # WT: the 1000-voxel cube plus one stray voxel.
    wt = result["WT"]
    assert wt["dice"] == pytest.approx(2000 / 2001)
    assert wt["tp"] == 1000 and wt["fp"] == 1 and wt["fn"] == 0
    assert wt["sensitivity"] == 1.0 and wt["precision"] == pytest.approx(1000 / 1001)
    assert wt["volume_truth_mm3"] == 2000.0 and wt["volume_difference_mm3"] == 2.0
    # The stray voxel's distance to the cube's corner (14, 14, 14) is the Hausdorff distance.
    assert wt["hausdorff"] == pytest.approx(math.sqrt(11**2 + 11**2 + (4 * 2.0) ** 2))
    assert wt["hd95"] == 0.0  # fewer than 5% of the pooled surface distances are non-zero

    # TC: identical.
    assert result["TC"]["dice"] == 1.0 and result["TC"]["hausdorff"] == 0.0
    assert result["TC"]["volume_truth_mm3"] == result["TC"]["volume_prediction_mm3"] == 64 * 2.0

    # ET: missed entirely.
    et = result["ET"]
    assert et["dice"] == 0.0 and et["sensitivity"] == 0.0 and et["precision"] == 0.0
    assert et["hd95"] == et["assd"] == et["hausdorff"] == EMPTY_CASE_DISTANCE_MM
    assert et["volume_truth_mm3"] == 16.0 and et["volume_prediction_mm3"] == 0.0
    assert et["volume_difference_mm3"] == -16.0

    # A subject without enhancing tumour, predicted without: ET is perfect.
    no_et = truth.copy()
    no_et[no_et == 4] = 1
    et = region_metrics(no_et, no_et, scheme, spacing)["ET"]
    assert et["dice"] == 1.0 and et["hd95"] == 0.0 and et["sensitivity"] == et["precision"] == 1.0

    # Each region agrees with medpy where medpy is defined.
    for region in ("WT", "TC"):
        p, t = scheme.region_mask(prediction, region), scheme.region_mask(truth, region)
        for name, value in medpy_metrics(p, t, spacing).items():
            assert result[region][name] == pytest.approx(value, abs=1e-6), (region, name)


def test_segmentation_volumes():
    prediction, _ = brats2021_case()
    volumes = segmentation_volumes(prediction, LABEL_SCHEMES["brats2021"], (1.0, 1.0, 2.0))
    assert volumes == {"WT": 2002.0, "TC": 128.0, "ET": 0.0}
    lesion = np.zeros((5, 5), np.uint8)
    lesion[1:3, 1:4] = 1
    assert segmentation_volumes(lesion, LABEL_SCHEMES["binary"], (0.5, 2.0)) == {"lesion": 6.0}


def test_region_dice_agrees_with_the_full_metrics():
    prediction, truth = brats2021_case()
    scheme = LABEL_SCHEMES["brats2021"]
    dices = region_dice(prediction, truth, scheme)
    full = region_metrics(prediction, truth, scheme, (1.0, 1.0, 1.0))
    assert dices == {region: full[region]["dice"] for region in scheme.regions}
    empty = np.zeros((3, 3), bool)
    assert dice(empty, empty) == 1.0
