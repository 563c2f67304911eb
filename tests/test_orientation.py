"""Any storage order gives the same preprocessing, and results land exactly on the file's own grid.

A subject stored RAS (NIfTI), LPS (MetaImage, as BRATS 2013/2015 ship) or with
permuted axes (a sagittally stored 3D FLAIR) is the same brain: after the
canonical reorientation its preprocessed image is the same, and a segmentation
made on the preprocessing grid goes back to each copy's own grid and affine.
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
    canonical_grid,
    canonical_orientation,
    labels_to_preprocessing_grid,
    preprocessing_grid,
    to_original_grid,
    to_preprocessing_grid,
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
@pytest.mark.parametrize("spacing_mm", [1.0, 2.0])
def test_any_storage_order_gives_the_same_preprocessed_image(flips, axes, spacing_mm):
    image, mask = subject()
    geometry = preprocessing_grid(mask, RAS, spacing_mm, margin_mm=3.0)
    reference = to_preprocessing_grid(image, geometry)
    stored_image, stored_affine = stored_as(image, RAS, flips, axes)
    stored_mask, _ = stored_as(mask, RAS, flips, axes)
    stored_geometry = preprocessing_grid(stored_mask, stored_affine, spacing_mm, margin_mm=3.0)
    assert stored_geometry.shape == geometry.shape
    np.testing.assert_allclose(stored_geometry.affine, geometry.affine, atol=1e-9)
    preprocessed = to_preprocessing_grid(stored_image, stored_geometry)
    if spacing_mm == 1.0:
        assert stored_geometry.is_exact
        np.testing.assert_array_equal(preprocessed, reference)  # a transpose, flip and crop: no interpolation
    else:
        np.testing.assert_allclose(preprocessed, reference, atol=1e-4)


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
    for name, volume in (("ras", ras), ("lps", lps)):
        export_subject(tmp_path / "p.nii.gz", tmp_path / f"{name}.json", BINARY, tmp_path / f"{name}_p.nii.gz",
                       tmp_path / f"{name}_seg.nii.gz")
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
