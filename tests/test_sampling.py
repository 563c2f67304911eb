import logging

import numpy as np
import pytest

from lesionseg.io import write_nifti
from lesionseg.labels import LABEL_SCHEMES
from lesionseg.sampling import (
    SAMPLING_STRATEGIES,
    class_probabilities,
    describe,
    read_samples,
    sample_centres,
    sample_subject,
    write_samples,
)

SHAPE = (40, 36, 30)
N_CLASSES = 5
AFFINE = np.diag([1.0, 1.0, 1.0, 1.0])


def synthetic_subject() -> tuple[np.ndarray, np.ndarray]:
    """Class map with classes 0-3 of very different sizes inside a box mask; class 4 only outside it."""
    classes = np.zeros(SHAPE, dtype=np.uint8)
    classes[10:30, 10:26, 8:22] = 2  # 4480 voxels, 3840 once class 1 is inside
    classes[14:24, 14:22, 10:18] = 1  # 640 voxels, 632 once class 3 is inside
    classes[18:20, 16:18, 12:14] = 3  # 8 voxels
    classes[0:2, 0:2, 0:2] = 4  # outside the mask: never sampled
    classes[4, 4, 4] = 2  # one more outside the mask
    mask = np.zeros(SHAPE, dtype=bool)
    mask[5:35, 5:31, 5:25] = True
    return classes, mask


def draw(strategy, n_samples=20_000, seed=0):
    classes, mask = synthetic_subject()
    return sample_centres(classes, mask, n_samples, strategy, N_CLASSES, np.random.default_rng(seed))


def fractions(sample_set) -> np.ndarray:
    return np.bincount(sample_set.classes, minlength=N_CLASSES) / len(sample_set)


def test_presets_are_the_three_documented_strategies():
    assert set(SAMPLING_STRATEGIES) == {"equiprobable", "foreground", "natural"}


def test_equiprobable_gives_each_present_class_the_same_share():
    samples = draw("equiprobable")
    np.testing.assert_allclose(fractions(samples), [0.25, 0.25, 0.25, 0.25, 0.0], atol=0.01)
    np.testing.assert_allclose(samples.probabilities, [0.25, 0.25, 0.25, 0.25, 0.0])
    assert samples.strategy == "equiprobable"


def test_foreground_is_half_background_and_foreground_classes_by_voxel_count():
    samples = draw("foreground")
    counts = samples.class_counts_in_brain
    share = fractions(samples)
    assert share[0] == pytest.approx(0.5, abs=0.01)
    assert share[1:].sum() == pytest.approx(0.5, abs=0.01)
    np.testing.assert_allclose(share[1:], 0.5 * counts[1:] / counts[1:].sum(), atol=0.01)


def test_explicit_class_weights_are_honoured_and_absent_classes_renormalise():
    samples = draw({"class_weights": [0.4, 0.1, 0.2, 0.1, 0.2]})
    # Class 4 is absent from the brain: its 0.2 is shared by the others in proportion.
    np.testing.assert_allclose(fractions(samples), [0.5, 0.125, 0.25, 0.125, 0.0], atol=0.01)
    assert samples.strategy == '{"class_weights": [0.4, 0.1, 0.2, 0.1, 0.2]}'


def test_natural_follows_the_voxel_counts_inside_the_mask():
    classes, mask = synthetic_subject()
    samples = draw("natural")
    expected = np.bincount(classes[mask], minlength=N_CLASSES) / mask.sum()
    np.testing.assert_array_equal(samples.class_counts_in_brain, np.bincount(classes[mask], minlength=N_CLASSES))
    np.testing.assert_allclose(fractions(samples), expected, atol=0.01)
    np.testing.assert_allclose(samples.probabilities, expected)


def test_class_probabilities_drop_absent_classes_and_renormalise():
    counts = np.array([900, 0, 60, 40])
    np.testing.assert_allclose(class_probabilities("equiprobable", counts), [1 / 3, 0, 1 / 3, 1 / 3])
    np.testing.assert_allclose(class_probabilities("foreground", counts), [0.5, 0, 0.3, 0.2])
    np.testing.assert_allclose(class_probabilities("natural", counts), [0.9, 0, 0.06, 0.04])
    custom = {"background_share": 0.2, "share_by": "equal"}
    np.testing.assert_allclose(class_probabilities(custom, counts), [0.2, 0, 0.4, 0.4])
    # No background in the brain: the foreground takes everything.
    np.testing.assert_allclose(class_probabilities("foreground", np.array([0, 30, 10])), [0, 0.75, 0.25])


def test_weights_only_on_absent_classes_fall_back_to_the_present_ones(caplog):
    with caplog.at_level(logging.WARNING):
        probabilities = class_probabilities({"class_weights": [0, 1, 0]}, np.array([10, 0, 5]))
    np.testing.assert_allclose(probabilities, [0.5, 0, 0.5])
    assert "gives no weight to the classes present" in caplog.text


def test_centres_are_inside_the_mask_and_classes_match_the_map():
    classes, mask = synthetic_subject()
    for strategy in SAMPLING_STRATEGIES:
        samples = draw(strategy, n_samples=5000)
        x, y, z = samples.centres.T
        assert samples.centres.shape == (5000, 3) and samples.centres.dtype == np.int32
        assert mask[x, y, z].all()
        np.testing.assert_array_equal(samples.classes, classes[x, y, z])
        np.testing.assert_array_equal(samples.samples_per_class, np.bincount(samples.classes, minlength=N_CLASSES))
        assert samples.samples_per_class.sum() == 5000


def test_small_classes_are_drawn_with_replacement_and_large_ones_without():
    samples = draw("equiprobable", n_samples=400)
    tiny = samples.centres[samples.classes == 3]
    assert len(tiny) == 100 and len(np.unique(tiny, axis=0)) == 8
    large = samples.centres[samples.classes == 2]
    assert len(np.unique(large, axis=0)) == len(large)


def test_sampling_is_deterministic_per_seed():
    first, again, other = draw("foreground", seed=7), draw("foreground", seed=7), draw("foreground", seed=8)
    np.testing.assert_array_equal(first.centres, again.centres)
    assert not np.array_equal(first.centres, other.centres)


def write_subject(folder, label, mask):
    label_path, mask_path = folder / "label.nii.gz", folder / "brain_mask.nii.gz"
    write_nifti(label_path, label, AFFINE, dtype=np.uint8)
    write_nifti(mask_path, mask, AFFINE, dtype=np.uint8)
    return label_path, mask_path


def test_sample_subject_sets_do_not_depend_on_plan_order(tmp_path):
    classes, mask = synthetic_subject()
    raw = LABEL_SCHEMES["brats2013"].to_raw(classes)
    label_path, mask_path = write_subject(tmp_path, raw, mask)
    scheme = LABEL_SCHEMES["brats2013"]
    plan = {"phase1": ("equiprobable", 300), "phase2": ("natural", 200)}
    forward = sample_subject(label_path, mask_path, scheme, plan, seed=1, subject="s01")
    backward = sample_subject(label_path, mask_path, scheme, dict(reversed(plan.items())), seed=1, subject="s01")
    other_subject = sample_subject(label_path, mask_path, scheme, plan, seed=1, subject="s02")
    for name in plan:
        np.testing.assert_array_equal(forward[name].centres, backward[name].centres)
        assert not np.array_equal(forward[name].centres, other_subject[name].centres)
    assert len(forward["phase1"]) == 300 and forward["phase2"].strategy == "natural"


def test_write_read_round_trip_and_description(tmp_path):
    sets = {"phase1": draw("equiprobable", 1000), "phase2": draw("natural", 500)}
    metadata = {"subject": "s01", "seed": 3, "plan": {"phase1": ["equiprobable", 1000]}}
    path = write_samples(tmp_path / "s01" / "samples.npz", sets, metadata)
    assert [p.name for p in path.parent.iterdir()] == ["samples.npz"]
    loaded, loaded_metadata = read_samples(path)
    assert list(loaded) == ["phase1", "phase2"] and loaded_metadata == metadata
    for name, original in sets.items():
        for field in ("centres", "classes", "class_counts_in_brain", "samples_per_class", "probabilities"):
            np.testing.assert_array_equal(getattr(loaded[name], field), getattr(original, field))
            assert getattr(loaded[name], field).dtype == getattr(original, field).dtype
        assert loaded[name].strategy == original.strategy
    summary = describe(loaded["phase1"], ["background", "necrosis", "edema", "non_enhancing", "enhancing"])
    assert summary["n_samples"] == 1000 and summary["strategy"] == "equiprobable"
    assert summary["classes"]["necrosis"] == {"voxels_in_brain": 632, "probability": 0.25, "samples": 250}
    assert summary["classes"]["enhancing"]["samples"] == 0


def test_write_refuses_metadata_that_is_not_json(tmp_path):
    with pytest.raises(ValueError, match="JSON-serialisable"):
        write_samples(tmp_path / "samples.npz", {"phase1": draw("natural", 10)}, {"seed": np.int64(1)})
    assert not list(tmp_path.iterdir())


def test_healthy_subject_is_sampled_on_background_only(tmp_path, caplog):
    _, mask = synthetic_subject()
    label_path, mask_path = write_subject(tmp_path, np.zeros(SHAPE, dtype=np.uint8), mask)
    plan = {"phase1": ("equiprobable", 100), "dm": ("foreground", 100), "phase2": ("natural", 100)}
    with caplog.at_level(logging.WARNING):
        sets = sample_subject(label_path, mask_path, LABEL_SCHEMES["brats2021"], plan, seed=0, subject="healthy")
    assert "no foreground" in caplog.text
    for samples in sets.values():
        assert len(samples) == 100 and not samples.classes.any()
        np.testing.assert_array_equal(samples.probabilities, [1, 0, 0, 0])


def test_unknown_strategy_names_the_allowed_ones():
    with pytest.raises(ValueError, match="unknown sampling strategy 'uniform'.*equiprobable, foreground, natural"):
        draw("uniform")
    with pytest.raises(ValueError, match="unexpected keys"):
        draw({"weights": [1, 1]})


def test_class_weights_must_match_the_number_of_classes():
    with pytest.raises(ValueError, match="class_weights has 3 entries but the label scheme has 5 classes"):
        draw({"class_weights": [1, 1, 1]})


def test_empty_brain_mask_is_refused(tmp_path):
    classes, _ = synthetic_subject()
    empty = np.zeros(SHAPE, dtype=bool)
    with pytest.raises(ValueError, match="brain mask is empty"):
        sample_centres(classes, empty, 10, "natural", N_CLASSES, np.random.default_rng(0))
    label_path, mask_path = write_subject(tmp_path, classes, empty)
    with pytest.raises(ValueError, match="brain_mask.nii.gz: the brain mask is empty"):
        sample_subject(label_path, mask_path, LABEL_SCHEMES["brats2013"], {"p": ("natural", 10)}, 0, "s")


def test_class_map_and_mask_of_different_shapes_are_refused():
    classes, mask = synthetic_subject()
    with pytest.raises(ValueError, match="must be 3D arrays of the same shape"):
        sample_centres(classes, mask[:-1], 10, "natural", N_CLASSES, np.random.default_rng(0))
