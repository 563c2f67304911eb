"""Reading and writing medical images, keeping their geometry.

Every image in lesionseg is a :class:`Volume`: a numpy array indexed ``(x, y, z)``
(or ``(x, y, z, c)``) and a 4x4 voxel-to-world affine in RAS+ millimetres, the
NIfTI convention. NIfTI (``.nii``, ``.nii.gz``) is read with nibabel; MetaImage
(``.mha``/``.mhd``, BRATS 2013/2015) with SimpleITK, its LPS+ geometry converted to
RAS+. Everything is written as NIfTI, atomically, so that a killed job never
leaves a file that looks complete.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

NIFTI_SUFFIXES = (".nii.gz", ".nii")
METAIMAGE_SUFFIXES = (".mha", ".mhd")
IMAGE_SUFFIXES = NIFTI_SUFFIXES + METAIMAGE_SUFFIXES

# Flips LPS+ world coordinates (ITK) to RAS+ (NIfTI) and back.
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


class ImageReadError(OSError):
    """An image file is missing, of an unknown type, or cannot be decoded."""


@dataclass(frozen=True)
class Header:
    """Geometry of an image, read without its voxels."""

    shape: tuple[int, ...]
    affine: np.ndarray

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size in mm along each array axis."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))


@dataclass
class Volume:
    """Voxel array ``(x, y, z[, c])`` with its voxel-to-world RAS+ affine (mm)."""

    data: np.ndarray
    affine: np.ndarray

    @property
    def header(self) -> Header:
        return Header(tuple(self.data.shape), self.affine)

    @property
    def spacing(self) -> tuple[float, ...]:
        return self.header.spacing


def image_suffix(path: str | os.PathLike) -> str:
    """The image-type suffix of ``path`` (``.nii.gz``, ``.nii``, ``.mha``, ``.mhd``), or ''."""
    name = Path(path).name.lower()
    return next((s for s in IMAGE_SUFFIXES if name.endswith(s)), "")


def strip_image_suffix(name: str) -> str:
    """``name`` without its image suffix: ``'a_t1.nii.gz' -> 'a_t1'``."""
    suffix = image_suffix(name)
    return name[: len(name) - len(suffix)] if suffix else name


def _require_image_file(path: Path) -> str:
    if not path.is_file():
        raise ImageReadError(f"{path}: file not found")
    suffix = image_suffix(path)
    if not suffix:
        raise ImageReadError(
            f"{path}: not a NIfTI or MetaImage file (expected one of {', '.join(IMAGE_SUFFIXES)})"
        )
    return suffix


def _sitk_affine(image) -> np.ndarray:
    """RAS+ affine of a SimpleITK image whose array is transposed to (x, y, z)."""
    ndim = image.GetDimension()
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(ndim, ndim)
    affine = np.eye(4)
    affine[:ndim, :ndim] = direction * np.asarray(image.GetSpacing(), dtype=float)
    affine[:ndim, 3] = image.GetOrigin()
    return _LPS_TO_RAS @ affine


def read_header(path: str | os.PathLike) -> Header:
    """Shape and affine of an image, without reading its voxels."""
    path = Path(path)
    suffix = _require_image_file(path)
    try:
        if suffix in NIFTI_SUFFIXES:
            img = nib.load(path)
            return Header(tuple(int(s) for s in img.shape), np.asarray(img.affine, dtype=float))
        import SimpleITK as sitk

        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        ndim = reader.GetDimension()
        direction = np.asarray(reader.GetDirection(), dtype=float).reshape(ndim, ndim)
        affine = np.eye(4)
        affine[:ndim, :ndim] = direction * np.asarray(reader.GetSpacing(), dtype=float)
        affine[:ndim, 3] = reader.GetOrigin()
        return Header(tuple(int(s) for s in reader.GetSize()), _LPS_TO_RAS @ affine)
    except ImageReadError:
        raise
    except Exception as err:  # nibabel and ITK raise many types for corrupt files
        raise ImageReadError(f"{path}: cannot read image header ({err})") from err


def read_image(path: str | os.PathLike, dtype: np.dtype | type | None = np.float32) -> Volume:
    """Read a NIfTI or MetaImage file as a :class:`Volume` (array axes x, y, z).

    ``dtype=None`` keeps the stored type (use it for label maps).
    """
    path = Path(path)
    suffix = _require_image_file(path)
    try:
        if suffix in NIFTI_SUFFIXES:
            img = nib.load(path)
            data = np.asanyarray(img.dataobj)
            if dtype is not None:
                data = img.get_fdata(dtype=np.float64).astype(dtype, copy=False)
            affine = np.asarray(img.affine, dtype=float)
        else:
            import SimpleITK as sitk

            image = sitk.ReadImage(str(path))
            data = sitk.GetArrayFromImage(image)
            # ITK arrays are (z, y, x[, c]); ours are (x, y, z[, c]).
            spatial = image.GetDimension()
            data = np.transpose(data, tuple(reversed(range(spatial))) + tuple(range(spatial, data.ndim)))
            affine = _sitk_affine(image)
            if dtype is not None:
                data = data.astype(dtype, copy=False)
    except ImageReadError:
        raise
    except Exception as err:
        raise ImageReadError(f"{path}: cannot read image ({err})") from err
    return Volume(np.ascontiguousarray(data), affine)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask



@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` only on success.

    The temporary name keeps the final suffix so writers that infer the format from
    it (nibabel, matplotlib) behave the same.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = image_suffix(path) or "".join(path.suffixes[-1:])
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp makes the file private (0600); results get the permissions of any new file.
    tmp.chmod(0o666 & ~_current_umask())
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_nifti(
    path: str | os.PathLike, data: np.ndarray, affine: np.ndarray, dtype: np.dtype | type | None = None,
    scaled_to: np.dtype | type | None = None,
) -> Path:
    """Write ``data`` (axes x, y, z[, c]) with ``affine`` as NIfTI, atomically.

    ``scaled_to`` stores float data as that integer type with a scale factor in
    the header (nibabel picks it from the data's range; readers undo it).
    """
    path = Path(path)
    if not path.name.endswith(NIFTI_SUFFIXES):
        raise ValueError(f"{path}: lesionseg writes NIfTI only; use a .nii or .nii.gz name")
    array = np.asarray(data if dtype is None else data.astype(dtype, copy=False))
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    img = nib.Nifti1Image(array, np.asarray(affine, dtype=float))
    if scaled_to is not None:
        img.header.set_data_dtype(scaled_to)
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(img, tmp)
    return path


def write_volume(path: str | os.PathLike, volume: Volume, dtype: np.dtype | type | None = None) -> Path:
    """Write a :class:`Volume` as NIfTI, atomically."""
    return write_nifti(path, volume.data, volume.affine, dtype)


def read_channels(paths: list[str | os.PathLike]) -> Volume:
    """Stack images into one ``(x, y, z, c)`` float32 volume; a 4D file contributes all its channels.

    All files must share one grid (validation checked it for a dataset's inputs).
    """
    channels, affine, origin_path = [], None, None
    for path in paths:
        volume = read_image(path)
        data = volume.data if volume.data.ndim == 4 else volume.data[..., None]
        if affine is None:
            affine, origin_path = volume.affine, path
        elif data.shape[:3] != channels[0].shape[:3] or not np.allclose(volume.affine, affine, atol=1e-3):
            raise ValueError(f"{path} is not on the grid of {origin_path}; co-register the modalities first")
        channels.append(data)
    if not channels:
        raise ValueError("no image to read")
    return Volume(np.concatenate(channels, axis=-1), affine)
