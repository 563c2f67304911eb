"""Any storage order gives the same preprocessing, and results land exactly on the file's own grid.

A subject stored RAS (NIfTI), LPS (MetaImage, as BRATS 2013/2015 ship) or with
permuted axes (a sagittally stored 3D FLAIR) is the same brain: every step
computes on the array in canonical order (N4 included), so its preprocessed
image is the same, and a segmentation made on the preprocessing grid goes back
to each copy's own grid and affine.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from lesionseg.inference.outputs import write_probabilities
from lesionseg.inference.segmentation_steps import export_subject
from lesionseg.io import read_image, write_nifti
from lesionseg.labels import scheme_from_config
from lesionseg.preprocessing.geometry import (
    GridGeometry,
    canonical_grid,
    canonical_orientation,
    labels_to_preprocessing_grid,
    preprocessing_grid,
    to_canonical_order,
    to_original_grid,
    to_preprocessing_grid,
)
from lesionseg.preprocessing.settings import resolve_settings
from lesionseg.preprocessing.steps import (
    bias_correct_subject,
    normalise_subject,
    preprocess_label,
    resample_crop_subject,
    skull_strip_subject,
)

SHAPE = (30, 26, 20)
RAS = np.diag([1.0, 1.0, 1.0, 1.0])
RAS[:3, 3] = [-14.0, -12.0, -9.0]
BINARY = scheme_from_config("binary")


def subject(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A brain-like image (0 outside an ellipsoid) and its mask, stored RAS."""
    x, y, z = np.meshgrid(*[np.arange(n, dtype=float) for n in SHAPE], indexing="ij")
    mask = ((x - 15) / 11) ** 2 + ((y - 13) / 9) ** 2 + ((z - 9) / 7) ** 2 <= 1
    image = np.where(mask, np.random.default_rng(seed).normal(100, 20, SHAPE), 0).astype(np.float32)
    return image, mask


def stored_as(data: np.ndarray, affine: np.ndarray, flips: tuple[int, ...], axes: tuple[int, int, int]):
    """The same image stored with ``flips`` of the given axes, then its axes in order ``axes``."""
    to_stored = np.eye(4)  # stored voxel -> original voxel
    flipped = data
    for axis in flips:
        flipped = np.flip(flipped, axis)
        step = np.eye(4)
        step[axis, axis], step[axis, 3] = -1, data.shape[axis] - 1
        to_stored = to_stored @ step
    permute = np.zeros((4, 4))
    permute[3, 3] = 1
    for stored_axis, axis in enumerate(axes):
        permute[axis, stored_axis] = 1
    return np.ascontiguousarray(np.transpose(flipped, axes)), affine @ to_stored @ permute


def write_lps_metaimage(path, data: np.ndarray, affine: np.ndarray) -> None:
    """A MetaImage as ITK writes it: LPS+ world, (z, y, x) array."""
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image = sitk.GetImageFromArray(np.transpose(data, (2, 1, 0)))
    image.SetSpacing(spacing.tolist())
    image.SetDirection((lps[:3, :3] / spacing).ravel().tolist())
    image.SetOrigin(lps[:3, 3].tolist())
    sitk.WriteImage(image, str(path))


def test_canonical_orientation_finds_the_axes_closest_to_ras():
    assert (canonical_orientation(RAS) == np.eye(3)).all()
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    assert (canonical_orientation(lps) == np.diag([-1, -1, 1])).all()
    sagittal = np.array([[0, 0, 1.0, 0], [1.0, 0, 0, 0], [0, -1.0, 0, 0], [0, 0, 0, 1]])  # stored (A, I, R)
    # R comes from stored axis 2, A from axis 0, S from axis 1 backwards.
    assert (canonical_orientation(sagittal) == np.array([[0, 1, 0], [0, 0, -1], [1, 0, 0]])).all()


@pytest.mark.parametrize("flips, axes", [((0, 1), (0, 1, 2)), ((), (2, 0, 1)), ((1,), (1, 2, 0))])
@pytest.mark.parametrize("spacing_mm", [1.0, 2.0, 0.75])
def test_any_storage_order_gives_the_same_preprocessed_image(flips, axes, spacing_mm):
    """Resampling reorients the array before it interpolates: the same values, and masks break ties alike."""
    image, mask = subject()
    geometry = preprocessing_grid(mask, RAS, spacing_mm, margin_mm=3.0)
    reference = to_preprocessing_grid(image, geometry)
    stored_image, stored_affine = stored_as(image, RAS, flips, axes)
    stored_mask, _ = stored_as(mask, RAS, flips, axes)
    stored_geometry = preprocessing_grid(stored_mask, stored_affine, spacing_mm, margin_mm=3.0)
    assert stored_geometry.shape == geometry.shape
    np.testing.assert_allclose(stored_geometry.affine, geometry.affine, atol=1e-9)
    assert stored_geometry.is_exact == (spacing_mm == 1.0)  # at 1 mm a transpose, flip and crop, else interpolated
    np.testing.assert_array_equal(to_preprocessing_grid(stored_image, stored_geometry), reference)
    np.testing.assert_array_equal(to_preprocessing_grid(stored_mask, stored_geometry, order=0),
                                  to_preprocessing_grid(mask, geometry, order=0))


def test_an_lps_metaimage_copy_is_preprocessed_like_the_nifti_and_its_segmentation_lands_on_its_grid(tmp_path):
    image, mask = subject()
    write_nifti(tmp_path / "ras.nii.gz", image, RAS)
    # BRATS' .mha files: stored with x and y reversed relative to RAS.
    lps_data, lps_affine = stored_as(image, RAS, (0, 1), (0, 1, 2))
    write_lps_metaimage(tmp_path / "lps.mha", lps_data, lps_affine)
    ras, lps = read_image(tmp_path / "ras.nii.gz"), read_image(tmp_path / "lps.mha")
    np.testing.assert_allclose(lps.affine, lps_affine, atol=1e-6)
    grids = {}
    for name, volume in (("ras", ras), ("lps", lps)):
        geometry = preprocessing_grid(volume.data != 0, volume.affine, 1.0, margin_mm=2.0)
        grids[name] = (geometry, to_preprocessing_grid(volume.data, geometry))
        geometry.to_json(tmp_path / f"{name}.json")
    np.testing.assert_array_equal(grids["lps"][1], grids["ras"][1])

    # A segmentation made on the (shared) preprocessing grid, exported onto each copy's own grid.
    geometry = grids["ras"][0]
    probabilities = np.zeros((2, *geometry.shape), dtype=np.float32)
    probabilities[0] = 1
    probabilities[:, 4:9, 6:8, 3:10] = np.array([0.1, 0.9])[:, None, None, None]
    write_probabilities(tmp_path / "p.nii.gz", probabilities, geometry.affine)
    write_nifti(tmp_path / "mi.nii.gz", np.zeros(geometry.shape, np.float32), geometry.affine)
    for name, volume in (("ras", ras), ("lps", lps)):
        export_subject(tmp_path / "p.nii.gz", tmp_path / "mi.nii.gz", tmp_path / f"{name}.json", BINARY,
                       tmp_path / f"{name}_p.nii.gz", tmp_path / f"{name}_seg.nii.gz", tmp_path / f"{name}_h.nii.gz",
                       tmp_path / f"{name}_mi.nii.gz")
        segmentation = read_image(tmp_path / f"{name}_seg.nii.gz", dtype=None)
        assert segmentation.data.shape == volume.data.shape
        np.testing.assert_allclose(segmentation.affine, volume.affine, atol=1e-6)
    ras_seg = read_image(tmp_path / "ras_seg.nii.gz", dtype=None).data
    lps_seg = read_image(tmp_path / "lps_seg.nii.gz", dtype=None).data
    np.testing.assert_array_equal(lps_seg, np.flip(np.flip(ras_seg, 0), 1))  # the same voxels in the world
    assert ras_seg.sum() == 5 * 2 * 7


def test_the_preprocessing_axes_are_canonical_left_right_first():
    """DeepMedic's x-flip flips left and right and Havaei's slices are axial, whatever the storage."""
    image, mask = subject()
    stored_image, stored_affine = stored_as(image, RAS, (), (2, 0, 1))
    geometry = preprocessing_grid(stored_image != 0, stored_affine, 1.0, 0.0)
    directions = geometry.affine[:3, :3] / np.linalg.norm(geometry.affine[:3, :3], axis=0)
    np.testing.assert_allclose(directions, np.eye(3), atol=1e-9)  # voxel axes run R, A, S


def test_canonical_grid_shows_a_volume_in_ras_order_without_interpolation():
    image, _ = subject()
    stored_image, stored_affine = stored_as(image, RAS, (0,), (1, 2, 0))
    canonical = canonical_grid(stored_image.shape, stored_affine)
    np.testing.assert_array_equal(to_preprocessing_grid(stored_image, canonical, order=0), image)
    np.testing.assert_allclose(canonical.affine, RAS, atol=1e-9)


def test_labels_onto_a_coarser_grid_are_resampled_per_class():
    """One-hot, linear, argmax: nested classes keep their place, and an exact crop keeps every value."""
    x, y, z = np.meshgrid(*[np.arange(n, dtype=float) for n in (40, 40, 40)], indexing="ij")
    centre = np.array([19.4, 20.3, 18.8])
    distance = np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2)
    labels = np.where(distance <= 8, 2, 0).astype(np.uint8)
    labels[distance <= 4] = 4  # a core inside the lesion
    geometry = preprocessing_grid(np.ones(labels.shape, bool), np.eye(4), 2.5, 0.0)
    coarse = labels_to_preprocessing_grid(labels, geometry)
    assert set(np.unique(coarse)) == {0, 2, 4}
    voxel_ml = 2.5**3
    for value, radius in ((4, 4), (2, 8)):
        inside = np.isin(coarse, [4] if value == 4 else [2, 4])
        assert inside.sum() * voxel_ml == pytest.approx(4 / 3 * np.pi * radius**3, rel=0.25)
        world = (geometry.affine @ np.c_[np.argwhere(inside), np.ones(inside.sum())].T)[:3].mean(axis=1)
        np.testing.assert_allclose(world, centre, atol=0.5)  # not shifted
    # Linear one-hot differs from nearest neighbour at the boundaries.
    assert (coarse != to_preprocessing_grid(labels, geometry, order=0)).any()
    exact = preprocessing_grid(labels > 0, np.eye(4), 1.0, 1.0)
    np.testing.assert_array_equal(to_original_grid(labels_to_preprocessing_grid(labels, exact), exact, order=0),
                                  labels)


def preprocess(out, images: dict[str, str], mask: str, label: str, settings: dict) -> None:
    """A subject's preprocessing chain through the functions the rules call (skull-strip to label), into ``out``."""
    modalities, paths = list(images), list(images.values())
    out.mkdir()
    skull_strip_subject("d", out.name, paths, modalities, "t1", settings["skull_strip"], 1, (None, None),
                        str(out / "brain_mask_original.nii.gz"), str(out / "skull_strip.json"), given_mask_path=mask)
    bias_correct_subject("d", out.name, paths, modalities, str(out / "brain_mask_original.nii.gz"),
                         settings["bias_correction"], str(out / "bias_corrected.nii.gz"),
                         str(out / "bias_correction.json"))
    resample_crop_subject("d", out.name, str(out / "bias_corrected.nii.gz"), str(out / "brain_mask_original.nii.gz"),
                          settings["resample"], str(out / "resampled.nii.gz"), str(out / "brain_mask.nii.gz"),
                          str(out / "geometry.json"), str(out / "resample.json"))
    records = [str(out / f"{name}.json") for name in ("skull_strip", "bias_correction", "resample")]
    normalise_subject("d", out.name, str(out / "resampled.nii.gz"), str(out / "brain_mask.nii.gz"), modalities,
                      settings["normalisation"], "fingerprint", records, paths, str(out / "image.nii.gz"),
                      str(out / "provenance.json"))
    preprocess_label(label, str(out / "geometry.json"), str(out / "label.nii.gz"))


def write_copy(files, folder, flips: tuple[int, ...], axes: tuple[int, int, int]) -> dict[str, str]:
    """A synthetic subject's images, brain mask and truth stored in another order, below ``folder``."""
    written = {}
    for key, path in [*files.images.items(), ("mask", files.extras["brain_mask"]), ("label", files.label)]:
        volume = read_image(path, dtype=None)
        data, affine = stored_as(volume.data, volume.affine, flips, axes)
        written[key] = str(write_nifti(folder / f"{key}.nii.gz", data, affine))
    return written


@pytest.fixture(scope="module")
def n4_case(tmp_path_factory):
    """A 4 mm synthetic subject, settings with N4 on (few iterations) and its preprocessing as stored (RAS)."""
    from lesionseg.datasets.cohort import write_synthetic_subject

    root = tmp_path_factory.mktemp("n4")
    files = write_synthetic_subject("tumor", 0, 0, 4.0, root / "data")
    settings = resolve_settings("d", "generic", tuple(files.images), {
        "bias_correction": {"shrink_factor": 2, "iterations": [10, 10], "spline_distance_mm": 100.0},
        "resample": {"spacing_mm": 3.0, "margin_mm": 4.0},  # interpolated, not a crop
    }, has_mask=True)
    assert settings["skull_strip"]["method"] == "given"
    raw = write_copy(files, root / "stored", (), (0, 1, 2))
    preprocess(root / "preprocessed", {m: raw[m] for m in files.images}, raw["mask"], raw["label"], settings)
    return files, settings, raw, root / "preprocessed"


@pytest.mark.parametrize("flips, axes", [((0, 1), (0, 1, 2)), ((1,), (2, 0, 1))])
def test_a_copy_in_another_storage_order_is_bias_corrected_and_preprocessed_the_same(n4_case, tmp_path, flips, axes):
    """N4's B-spline grid follows the array's axes: it must see the same (canonical) array for every copy.

    While N4 ran in storage order and resampling interpolated before it
    reoriented, these copies came out up to 3.7 z-score units apart (N4 alone:
    0.11; the rest: the brain mask's nearest-neighbour ties at 3 mm).
    """
    files, settings, raw, original = n4_case
    copied = write_copy(files, tmp_path / "stored", flips, axes)
    copy = tmp_path / "preprocessed"
    preprocess(copy, {m: copied[m] for m in files.images}, copied["mask"], copied["label"], settings)
    for name in ("image", "brain_mask", "label"):
        reference, other = (read_image(folder / f"{name}.nii.gz", dtype=None) for folder in (original, copy))
        np.testing.assert_allclose(other.affine, reference.affine, atol=1e-9)
        np.testing.assert_allclose(other.data, reference.data, rtol=0, atol=1e-5, err_msg=name)
    # The intermediate files stay on each copy's own grid, in its storage order.
    t1 = read_image(copied["t1"])
    for name in ("brain_mask_original", "bias_corrected"):
        reference, other = (read_image(folder / f"{name}.nii.gz", dtype=None) for folder in (original, copy))
        np.testing.assert_allclose(other.affine, t1.affine, atol=1e-9)
        np.testing.assert_allclose(to_canonical_order(other.data, other.affine)[0],
                                   to_canonical_order(reference.data, reference.affine)[0], rtol=0, atol=1e-4,
                                   err_msg=name)
    np.testing.assert_array_equal(GridGeometry.from_json(copy / "geometry.json").original_affine, t1.affine)
    corrected = read_image(original / "bias_corrected.nii.gz").data[..., list(files.images).index("t1")]
    assert np.mean(corrected != read_image(raw["t1"]).data) > 0.05  # N4 did change the image
