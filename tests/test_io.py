import numpy as np
import pytest

from conftest import write_image
from lesionseg.io import ImageReadError, atomic_path, read_header, read_image, write_nifti


def test_nifti_round_trip_keeps_data_and_affine(tmp_path):
    affine = np.array([[-1.5, 0, 0, 90], [0, 1.5, 0, -126], [0, 0, 2.0, -72], [0, 0, 0, 1]])
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    for name in ("a.nii.gz", "b.nii"):
        write_nifti(tmp_path / name, data, affine)
        volume = read_image(tmp_path / name)
        np.testing.assert_array_equal(volume.data, data)
        np.testing.assert_allclose(volume.affine, affine)
        assert volume.spacing == pytest.approx((1.5, 1.5, 2.0))
        assert read_header(tmp_path / name).shape == (2, 3, 4)


def test_metaimage_reads_with_the_geometry_of_the_equivalent_nifti(tmp_path):
    import SimpleITK as sitk

    data = np.random.default_rng(0).normal(size=(5, 6, 7)).astype(np.float32)
    image = sitk.GetImageFromArray(np.transpose(data, (2, 1, 0)))
    image.SetSpacing((0.9, 1.1, 3.0))
    image.SetOrigin((10.0, -20.0, 5.0))
    sitk.WriteImage(image, str(tmp_path / "x.mha"))
    sitk.WriteImage(image, str(tmp_path / "x.nii.gz"))  # ITK's own NIfTI writer, as a reference
    mha, nii = read_image(tmp_path / "x.mha"), read_image(tmp_path / "x.nii.gz")
    np.testing.assert_array_equal(mha.data, data)
    np.testing.assert_array_equal(nii.data, data)
    np.testing.assert_allclose(mha.affine, nii.affine, atol=1e-5)
    assert read_header(tmp_path / "x.mha").shape == (5, 6, 7)
    np.testing.assert_allclose(read_header(tmp_path / "x.mha").affine, nii.affine, atol=1e-5)


def test_label_maps_keep_their_integer_type(tmp_path):
    write_image(tmp_path / "seg.nii.gz", np.array([[[0, 4]]], dtype=np.uint8))
    assert read_image(tmp_path / "seg.nii.gz", dtype=None).data.dtype == np.uint8


@pytest.mark.parametrize(
    "name, content, message",
    [("missing.nii.gz", None, "file not found"), ("notes.txt", b"x", "not a NIfTI or MetaImage"),
     ("broken.nii.gz", b"\x1f\x8b garbage", "cannot read")],
)
def test_unreadable_files_raise_a_clear_error(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageReadError, match=message) as err:
        read_image(path)
    assert str(path) in str(err.value)


def test_atomic_path_leaves_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "out.nii.gz"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_writes_get_the_permissions_of_any_new_file(tmp_path):
    import os

    from lesionseg.io import atomic_path

    mask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "a.txt") as tmp:
            tmp.write_text("x")
        plain = tmp_path / "b.txt"
        plain.write_text("x")
    finally:
        os.umask(mask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == 0o644
