"""Preprocessing: each method and option on small synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lesionseg.io import Volume, read_image, write_nifti
from lesionseg.masks import border_background
from lesionseg.preprocessing import skullstrip
from lesionseg.preprocessing.ants_bridge import from_ants, set_threads, to_ants
from lesionseg.preprocessing.bias import n4_correct
from lesionseg.preprocessing.geometry import (
    GridGeometry,
    preprocessing_grid,
    to_original_grid,
    to_preprocessing_grid,
)
from lesionseg.preprocessing.normalisation import normalise, normalise_channel
from lesionseg.preprocessing.settings import PreprocessingConfigError, fingerprint, resolve_settings
from lesionseg.preprocessing.steps import PreprocessingError, skull_strip_subject
from lesionseg.synthetic import head_template
from lesionseg.synthetic.subject import simulate

set_threads(1)  # registrations repeat exactly on one thread only
MODS = ("flair", "t1", "t1ce", "t2")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.fixture(scope="module")
def head():
    """A synthetic tumour head at 3 mm with its tissue fractions."""
    return simulate("tumor", seed=0, index=2, spacing_mm=3.0)


# --- geometry ------------------------------------------------------------------------

OBLIQUE = np.array([[-0.9, 0.1, 0.0, 80.0], [0.1, 0.9, 0.0, -100.0], [0.0, 0.0, 3.0, -50.0], [0, 0, 0, 1]])


@pytest.mark.parametrize("affine", [np.diag([1.0, 1.0, 1.0, 1.0]), OBLIQUE])
def test_ants_conversion_matches_ants_own_reader(tmp_path, affine):
    import ants

    data = np.random.default_rng(0).random((6, 7, 8)).astype(np.float32)
    write_nifti(tmp_path / "x.nii.gz", data, affine)
    reference = ants.image_read(str(tmp_path / "x.nii.gz"))
    converted = to_ants(data, affine)
    np.testing.assert_allclose(converted.origin, reference.origin, atol=1e-4)
    np.testing.assert_allclose(converted.direction, reference.direction, atol=1e-5)
    np.testing.assert_allclose(converted.spacing, reference.spacing, atol=1e-5)
    back = from_ants(converted)
    np.testing.assert_allclose(back.affine, affine, atol=1e-5)
    np.testing.assert_array_equal(back.data, data)


def brain_like(shape=(40, 44, 36)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[8:30, 10:35, 6:28] = True
    return mask


def test_same_spacing_is_an_exact_crop_and_uncrop():
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = [-20, -22, -18]
    mask = brain_like()
    image = np.random.default_rng(1).random(mask.shape).astype(np.float32)
    geometry = preprocessing_grid(mask, affine, spacing_mm=1.0, margin_mm=3.0)
    assert geometry.shape == (28, 31, 28)
    cropped = to_preprocessing_grid(image, geometry)
    np.testing.assert_array_equal(cropped, image[5:33, 7:38, 3:31])  # no interpolation at all
    back = to_original_grid(cropped, geometry)
    np.testing.assert_array_equal(back[5:33, 7:38, 3:31], image[5:33, 7:38, 3:31])
    assert back[:5].max() == 0 and back.shape == image.shape
    # Voxel i of the crop is where the original voxel start + i is, in world coordinates.
    np.testing.assert_allclose(geometry.affine @ [0, 0, 0, 1], affine @ [5, 7, 3, 1])


def test_resampling_to_a_coarser_grid_and_back_keeps_the_world_position():
    affine = np.diag([0.9, 0.9, 3.0, 1.0])
    mask = brain_like()
    x, y, z = np.meshgrid(*[np.arange(n) for n in mask.shape], indexing="ij")
    world_x = (affine @ np.stack([x, y, z, np.ones_like(x)]).reshape(4, -1))[0].reshape(mask.shape)
    geometry = preprocessing_grid(mask, affine, spacing_mm=1.5, margin_mm=4.0)
    np.testing.assert_allclose(geometry.spacing, [1.5, 1.5, 1.5])
    resampled = to_preprocessing_grid(world_x.astype(np.float32), geometry)
    # A linear ramp in world x stays that ramp on the new grid (away from the edges).
    i, j, k = np.array(geometry.shape) // 2
    assert resampled[i, j, k] == pytest.approx((geometry.affine @ [i, j, k, 1])[0], abs=0.05)
    back = to_original_grid(resampled, geometry)
    inside = mask.copy()
    np.testing.assert_allclose(back[inside], world_x[inside], atol=0.1)


def test_geometry_round_trips_through_json(tmp_path):
    geometry = preprocessing_grid(brain_like(), OBLIQUE, spacing_mm=1.0, margin_mm=2.0)
    geometry.to_json(tmp_path / "g.json")
    loaded = GridGeometry.from_json(tmp_path / "g.json")
    np.testing.assert_allclose(loaded.affine, geometry.affine)
    assert loaded.shape == geometry.shape and loaded.original_shape == geometry.original_shape


def test_probabilities_go_back_with_background_filled():
    mask = brain_like()
    geometry = preprocessing_grid(mask, np.eye(4), spacing_mm=1.0, margin_mm=0.0)
    probabilities = np.zeros((*geometry.shape, 2), dtype=np.float32)
    probabilities[..., 1] = 1.0
    back = to_original_grid(probabilities, geometry, cval=[1.0, 0.0])
    assert back[0, 0, 0].tolist() == [1.0, 0.0] and back[10, 12, 8].tolist() == [0.0, 1.0]


# --- normalisation ---------------------------------------------------------------------


def test_zscore_inside_the_mask_and_zero_outside():
    rng = np.random.default_rng(0)
    image = rng.normal(300, 40, size=(20, 20, 20)).astype(np.float32)
    mask = np.zeros((20, 20, 20), bool)
    mask[4:16, 4:16, 4:16] = True
    out = normalise_channel(image, mask, "zscore")
    assert out[mask].mean() == pytest.approx(0, abs=1e-5) and out[mask].std() == pytest.approx(1, abs=1e-4)
    assert np.all(out[~mask] == 0)


def test_percentile_zscore_clips_outliers_first():
    image = np.ones((10, 10, 10), dtype=np.float32)
    image[:5] = 2.0
    image[0, 0, 0] = 1e6  # one hot voxel must not dominate
    mask = np.ones_like(image, dtype=bool)
    out = normalise_channel(image, mask, "percentile-zscore", (1, 99))
    assert out.max() < 2 and out[0, 0, 0] == out[1, 0, 0]
    plain = normalise_channel(image, mask, "zscore")
    assert plain[0, 0, 0] > 20


def test_normalisation_refuses_constant_and_unknown():
    mask = np.ones((4, 4, 4), dtype=bool)
    with pytest.raises(ValueError, match="constant inside the brain mask"):
        normalise(np.ones((4, 4, 4, 1), np.float32), mask)
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalise_channel(np.random.random((4, 4, 4)), mask, "minmax")


# --- N4 ---------------------------------------------------------------------------------


def test_n4_lowers_the_white_matter_coefficient_of_variation():
    head = simulate("tumor", seed=0, index=0, spacing_mm=2.0)  # the demo's spacing and N4 settings
    subject = head.subject
    white_matter = (head.tissue_fractions["wm"] > 0.95) & (subject.label == 0)
    brain = subject.brain_mask > 0
    settings = resolve_settings("demo", "synthetic", MODS, {}, 2.0)["bias_correction"]
    for modality in ("t1", "flair"):
        image = subject.images[modality]
        corrected = n4_correct(image, subject.affine, brain, settings["shrink_factor"], settings["iterations"])

        def cv(a):
            return a[white_matter].std() / a[white_matter].mean()

        assert cv(corrected) < 0.95 * cv(image), modality
        np.testing.assert_array_equal(corrected[~brain], image[~brain])


def test_n4_handles_non_positive_intensities(head):
    subject = head.subject
    brain = subject.brain_mask > 0
    shifted = subject.images["t1"] - subject.images["t1"][brain].mean()  # half the brain now negative
    corrected = n4_correct(shifted, subject.affine, brain, iterations=(20, 20))
    assert np.isfinite(corrected).all()


# --- skull-stripping ----------------------------------------------------------------------


def test_template_skull_strip_reaches_dice_095_on_synthetic_heads():
    template = head_template("t1", spacing_mm=2.0)
    template_volume = Volume(template.image, template.affine)
    template_mask = Volume(template.brain_mask.astype(np.float32), template.affine)
    for index in (0, 5):
        subject = simulate("tumor", seed=7, index=index, spacing_mm=2.0).subject
        mask = skullstrip.mask_with_template(
            Volume(subject.images["t1"], subject.affine), template_volume, template_mask, "SyN", 1, 3.0
        )
        assert dice(mask, subject.brain_mask > 0) >= 0.95


def test_template_skull_strip_is_reproducible(head):
    template = head_template("t1", spacing_mm=3.0)
    subject = head.subject
    masks = [
        skullstrip.mask_with_template(Volume(subject.images["t1"], subject.affine), Volume(template.image, template.affine),
                                      Volume(template.brain_mask.astype(np.float32), template.affine), "SyN", 5, 3.0)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(masks[0], masks[1])


@pytest.mark.slow
def test_robex_skull_strip_on_one_small_case(head):
    subject = head.subject
    mask = skullstrip.mask_with_robex(Volume(subject.images["t1"], subject.affine))
    assert dice(mask, subject.brain_mask > 0) >= 0.9


def test_brain_only_data_mask_is_the_non_zero_region(head):
    subject = head.subject
    brain = subject.brain_mask > 0
    stack = np.stack([np.where(brain, subject.images[m], 0) for m in MODS], axis=-1)
    mask = skullstrip.mask_from_brain_only(stack)
    assert dice(mask, brain) > 0.99


def test_brain_only_data_with_a_non_zero_background(head):
    """Z-scored brain-only data (DeepMedic's examples): the background is a negative constant per channel."""
    subject = head.subject
    brain = subject.brain_mask > 0
    stack = np.stack([np.where(brain, subject.images[m], -1.7 - c) for c, m in enumerate(MODS)], axis=-1)
    assert border_background(stack[..., 1]) == pytest.approx(-2.7)
    assert dice(skullstrip.mask_from_brain_only(stack, MODS), brain) > 0.99


def test_a_given_mask_is_the_brain_mask_exactly(tmp_path, head):
    subject = head.subject
    paths = [str(write_nifti(tmp_path / f"{m}.nii.gz", subject.images[m], subject.affine)) for m in MODS]
    given = np.where(subject.brain_mask > 0, 0.98, 0.0)  # float64, about 1 inside, as DeepMedic's examples
    given[0, 0, 0] = 0.98  # a stray voxel: kept, a given mask is not cleaned
    write_nifti(tmp_path / "given.nii.gz", given, subject.affine)
    settings = resolve_settings("d", "generic", MODS, {}, has_mask=True)["skull_strip"]
    assert settings["method"] == "given"
    skull_strip_subject("d", "s", paths, MODS, "t1", settings, 1, (None, None), str(tmp_path / "mask.nii.gz"),
                        str(tmp_path / "rec.json"), given_mask_path=str(tmp_path / "given.nii.gz"))
    mask = read_image(tmp_path / "mask.nii.gz", dtype=None)
    np.testing.assert_array_equal(mask.data, given > 0.5)
    np.testing.assert_allclose(mask.affine, subject.affine)
    write_nifti(tmp_path / "other.nii.gz", given, np.diag([2.0, 2.0, 2.0, 1.0]))
    with pytest.raises(PreprocessingError, match="other.nii.gz is not on the grid"):
        skull_strip_subject("d", "s", paths, MODS, "t1", settings, 1, (None, None), str(tmp_path / "m2.nii.gz"),
                            str(tmp_path / "r2.json"), given_mask_path=str(tmp_path / "other.nii.gz"))


def test_hd_bet_missing_is_explained(monkeypatch, head):
    monkeypatch.setattr(skullstrip.shutil, "which", lambda name: None)
    with pytest.raises(skullstrip.SkullStripError, match="needs the hd-bet command"):
        skullstrip.mask_with_hd_bet(Volume(head.subject.images["t1"], head.subject.affine))


@pytest.mark.parametrize(
    "images_of, message",
    [
        (lambda subject, m: np.zeros_like(subject.images[m]), "empty brain mask"),
        # Brain-only method on a head with skull, scalp and noise: no constant background.
        (lambda subject, m: subject.images[m], "has no constant background"),
        # A constant background only at the border: the rest is far more than a brain.
        (lambda subject, m: np.pad(subject.images[m][1:-1, 1:-1, 1:-1], 1), "outside the plausible range"),
    ],
)
def test_implausible_masks_fail_the_subject_without_output(tmp_path, head, images_of, message):
    subject = head.subject
    paths = [str(write_nifti(tmp_path / f"{m}.nii.gz", images_of(subject, m), subject.affine)) for m in MODS]
    settings = resolve_settings("d", "brats2021", MODS, {})["skull_strip"]
    with pytest.raises(PreprocessingError) as err:
        skull_strip_subject("d", "SynthTumor_002", paths, MODS, "t1", settings, 1, (None, None),
                            str(tmp_path / "mask.nii.gz"), str(tmp_path / "rec.json"))
    text = str(err.value)
    assert "subject 'SynthTumor_002'" in text and "skull_strip" in text and message in text
    if message != "empty brain mask":
        assert "'mask:'" in text  # the fix for brain-only data that ships its masks
    assert not (tmp_path / "mask.nii.gz").exists() and not (tmp_path / "rec.json").exists()


# --- co-registration ----------------------------------------------------------------------


def test_coregistration_undoes_a_rigid_misalignment(head):
    from lesionseg.preprocessing.coregistration import coregister

    subject = head.subject
    moved = subject.affine.copy()
    moved[:3, 3] += [6.0, -4.5, 3.0]  # the T2 now sits 8 mm away in world space
    images = {"t1": Volume(subject.images["t1"], subject.affine), "t2": Volume(subject.images["t2"], moved)}
    stack, record = coregister(images, "t1")
    brain = subject.brain_mask > 0
    registered = stack.data[..., 1]
    correlation = np.corrcoef(registered[brain], subject.images["t2"][brain])[0, 1]
    assert correlation > 0.95
    assert record["t1"]["transform"].startswith("identity") and len(record["t2"]["parameters"]) == 12
    np.testing.assert_allclose(stack.affine, subject.affine)


# --- settings -------------------------------------------------------------------------------


def test_settings_merge_defaults_presets_and_overrides():
    settings = resolve_settings("d", "brats2021", MODS, {"bias_correction": {"modalities": ["t1", "t1ce"]}})
    assert settings["skull_strip"]["method"] == "none" and settings["reference"] == "t1"
    assert settings["bias_correction"]["shrink_factor"] == 4  # nested keys merge
    synthetic = resolve_settings("d", "synthetic", MODS, {}, default_spacing_mm=2.0)
    assert synthetic["skull_strip"]["method"] == "template" and synthetic["resample"]["spacing_mm"] == 2.0
    assert fingerprint(settings, MODS) != fingerprint(synthetic, MODS)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"reference": "dwi"}, "reference 'dwi' is not one of"),
        ({"skull_strip": {"method": "template"}}, "needs 'template'"),
        ({"skull_strip": {"method": "template", "template": "/t.nii.gz"}}, "template_mask"),
        ({"bias_correction": {"modalities": ["t1c"]}}, r"bias_correction modalities \['t1c'\]"),
        ({"normalisation": {"percentiles": [99, 1]}}, "percentiles"),
    ],
)
def test_inconsistent_settings_are_explained(overrides, message):
    with pytest.raises(PreprocessingConfigError, match=message):
        resolve_settings("d", "brats2021", MODS, overrides)


def test_provenance_record_lists_steps_checksums_and_versions(tmp_path):
    from lesionseg.preprocessing.provenance import assemble_provenance, sha256_file, step_record

    source = tmp_path / "a.nii.gz"
    write_nifti(source, np.ones((2, 2, 2), np.float32), np.eye(4))
    record = assemble_provenance("s", "d", "abc", MODS, [step_record("n4", {"x": 1}, seconds=2.0)], [source])
    assert record["inputs"][str(source)]["sha256"] == sha256_file(source)
    assert record["steps"][0] == {"step": "n4", "parameters": {"x": 1}, "seconds": 2.0}
    assert "antspyx" in record["versions"] and json.dumps(record)
    assert read_image(source).data.sum() == 8
