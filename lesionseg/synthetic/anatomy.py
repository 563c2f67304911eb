"""Healthy head anatomy: MNI152 tissue maps, a random deformation, skull and scalp.

The brain comes from the MNI152 2009c symmetric template shipped inside the
nilearn wheel (grey- and white-matter probability maps and the brain-only T1,
1 mm), so nothing is downloaded. CSF is what lies inside the brain outline (plus
a thin layer around it) that is neither grey nor white matter. Each subject gets
a random global scaling/rotation/shift and a smooth random displacement field;
the skull and scalp are shells at random thicknesses outside the deformed brain.

All arrays are indexed (x, y, z) on an isotropic RAS+ grid whose world
coordinates are MNI millimetres of the undeformed template.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import nilearn
import numpy as np
from scipy import ndimage as ndi
from scipy.spatial.transform import Rotation

from lesionseg.synthetic.fields import inside_fraction, smooth_random_field

MNI_DATA_DIR = Path(nilearn.__file__).parent / "datasets" / "data"
MNI_FILE_PATTERN = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"

# Room between the brain's bounding box and the array border (mm): the CSF layer,
# skull and scalp take up to ~20 mm, the random rotation/shift a few more, and
# some air must remain so the background shows noise only.
HEAD_MARGIN_MM = 32.0
# Smoothing of the brain outline before it becomes the inner surface of the
# skull: the skull does not follow small notches of the brain surface.
OUTLINE_SMOOTHING_MM = 2.0
# The template brain (MNI space) is larger than an average adult brain; subjects
# are shrunk around this mean linear scale.
MEAN_BRAIN_SCALE = 0.88
HEALTHY_TISSUES = ("gm", "wm", "csf", "skull", "scalp")
# Range of the thickness of each layer around the brain (mm), drawn per subject.
LAYER_THICKNESS_MM = {"csf": (1.0, 2.5), "skull": (4.5, 7.0), "scalp": (4.0, 7.0)}


@dataclass(frozen=True)
class Template:
    """The MNI152 tissue model resampled to an isotropic grid padded for a head.

    ``gm``, ``wm``: probabilities in [0, 1], float32 (x, y, z).
    ``outline_distance_mm``: signed distance to the smoothed brain outline, mm,
    negative inside. ``affine``: voxel -> MNI mm (RAS+). ``centre_vox``: centre
    of the brain's bounding box, voxels.
    """

    gm: np.ndarray
    wm: np.ndarray
    outline_distance_mm: np.ndarray
    affine: np.ndarray
    spacing_mm: float
    centre_vox: np.ndarray


@dataclass(frozen=True)
class _MniMaps:
    """The 1 mm template maps: ``gm``, ``wm`` float32 in [0, 1]; ``outline`` bool."""

    gm: np.ndarray
    wm: np.ndarray
    outline: np.ndarray
    affine: np.ndarray


@dataclass
class Anatomy:
    """A subject's healthy head on the template grid.

    ``fractions``: tissue fractions per voxel (float32 (x, y, z)) for
    :data:`HEALTHY_TISSUES`; they sum to <= 1, the rest being air.
    ``outline_distance_mm``: signed distance to the brain outline in subject mm
    (negative inside; its negation is the depth below the brain surface).
    ``mni_mm``: float32 (3, x, y, z), the template (MNI) position each voxel was
    taken from, to tell hemispheres and lobes apart after the deformation.
    """

    fractions: dict[str, np.ndarray]
    outline_distance_mm: np.ndarray
    mni_mm: np.ndarray

    @property
    def inside_skull(self) -> np.ndarray:
        """Fraction of each voxel inside the skull (GM + WM + CSF), float32 (x, y, z)."""
        return self.fractions["gm"] + self.fractions["wm"] + self.fractions["csf"]


@lru_cache(maxsize=1)
def _load_mni() -> _MniMaps:
    """Read the 1 mm template maps once per process."""

    def read(name: str) -> nib.Nifti1Image:
        return nib.load(MNI_DATA_DIR / MNI_FILE_PATTERN.format(name))

    t1 = read("t1")
    outline = ndi.binary_fill_holes(np.asarray(t1.dataobj) > 0)
    # The probability maps have a little grey matter outside the brain (dura).
    gm = np.where(outline, np.asarray(read("gm").dataobj, dtype=np.float32) / 255.0, 0.0).astype(np.float32)
    wm = np.where(outline, np.asarray(read("wm").dataobj, dtype=np.float32) / 255.0, 0.0).astype(np.float32)
    return _MniMaps(gm=gm, wm=wm, outline=outline, affine=np.asarray(t1.affine, dtype=float))


def _resample(volume: np.ndarray, zoom_in: float, start_vox: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sample ``volume`` (1 mm) at ``start_vox + zoom_in * i`` (order 1), float32 of ``shape``.

    When coarsening, a Gaussian prefilter matching the variance of a box of the
    new voxel size keeps partial volume instead of aliasing.
    """
    sigma = np.sqrt(max(zoom_in**2 - 1.0, 0.0) / 12.0)
    source = ndi.gaussian_filter(volume, sigma) if sigma > 0 else volume
    return ndi.affine_transform(
        source, np.diag(np.full(3, zoom_in)), offset=start_vox, output_shape=shape, order=1, mode="constant", cval=0.0,
        output=np.float32,
    )


@lru_cache(maxsize=4)
def template(spacing_mm: float) -> Template:
    """The tissue model on an isotropic ``spacing_mm`` grid with :data:`HEAD_MARGIN_MM` of padding."""
    mni = _load_mni()
    native_mm = float(np.linalg.norm(mni.affine[:3, 0]))
    brain_vox = np.argwhere(mni.outline)
    low_mm = nib.affines.apply_affine(mni.affine, brain_vox.min(axis=0)) - HEAD_MARGIN_MM
    high_mm = nib.affines.apply_affine(mni.affine, brain_vox.max(axis=0)) + HEAD_MARGIN_MM
    shape = tuple(int(n) for n in np.ceil((high_mm - low_mm) / spacing_mm) + 1)
    affine = np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0])
    affine[:3, 3] = low_mm
    start_vox = nib.affines.apply_affine(np.linalg.inv(mni.affine), low_mm)
    zoom_in = spacing_mm / native_mm

    smooth_outline = ndi.gaussian_filter(mni.outline.astype(np.float32), OUTLINE_SMOOTHING_MM / native_mm) > 0.5
    outline = _resample(smooth_outline.astype(np.float32), zoom_in, start_vox, shape) >= 0.5
    # Distances from voxel centres to the nearest voxel across the outline, minus
    # half a voxel so the zero level sits between them; a light blur removes
    # the staircase the skull would otherwise inherit.
    distance = ndi.distance_transform_edt(~outline, sampling=spacing_mm) - ndi.distance_transform_edt(
        outline, sampling=spacing_mm
    )
    distance = distance - np.sign(distance) * 0.5 * spacing_mm
    distance = ndi.gaussian_filter(distance.astype(np.float32), 1.0)
    gm, wm = _resample(mni.gm, zoom_in, start_vox, shape), _resample(mni.wm, zoom_in, start_vox, shape)
    for cached in (gm, wm, distance):
        cached.flags.writeable = False  # shared by every subject of the process
    return Template(
        gm=gm,
        wm=wm,
        outline_distance_mm=distance,
        affine=affine,
        spacing_mm=spacing_mm,
        centre_vox=((brain_vox.min(axis=0) + brain_vox.max(axis=0)) / 2.0 - start_vox) / zoom_in,
    )


def _template_coordinates(
    tpl: Template, subject_to_template: np.ndarray, shift_vox: np.ndarray, displacement_vox: list[np.ndarray] | None
) -> np.ndarray:
    """Where each subject voxel samples the template: float32 (3, x, y, z) template voxels.

    A linear map ``subject_to_template`` about the brain centre, a shift and an
    optional displacement field per axis (template voxels).
    """
    shape = tpl.gm.shape
    centred = [np.arange(n, dtype=np.float32) - c for n, c in zip(shape, tpl.centre_vox, strict=True)]
    axes = [centred[0][:, None, None], centred[1][None, :, None], centred[2][None, None, :]]
    coordinates = np.empty((3, *shape), dtype=np.float32)
    for out_axis in range(3):
        coordinates[out_axis] = displacement_vox[out_axis] if displacement_vox is not None else 0.0
        coordinates[out_axis] += np.float32(tpl.centre_vox[out_axis] + shift_vox[out_axis])
        for in_axis in range(3):
            coordinates[out_axis] += np.float32(subject_to_template[out_axis, in_axis]) * axes[in_axis]
    return coordinates


def _random_template_coordinates(rng: np.random.Generator, tpl: Template) -> tuple[np.ndarray, float]:
    """Random template coordinates of a subject's voxels, and its mean linear scale.

    Composes a random global affine transform about the brain centre (per-axis
    scale, rotation up to 8 degrees, shift of a few mm) with a smooth random
    displacement of a few mm. The scale is subject mm per template mm.
    """
    spacing = tpl.spacing_mm
    shape = tpl.gm.shape
    scales = MEAN_BRAIN_SCALE * np.exp(rng.normal(0.0, 0.03) + rng.normal(0.0, 0.02, size=3))
    rotation_vector = rng.normal(size=3)
    rotation_vector *= np.deg2rad(np.clip(rng.normal(0.0, 4.0), -8.0, 8.0)) / np.linalg.norm(rotation_vector)
    subject_to_template = Rotation.from_rotvec(rotation_vector).as_matrix() @ np.diag(1.0 / scales)
    shift_vox = rng.normal(0.0, 2.0, size=3) / spacing
    amplitude_vox = np.float32(rng.uniform(1.5, 3.5) / spacing)
    displacement = [smooth_random_field(rng, shape, spacing, 20.0) * amplitude_vox for _ in range(3)]
    return _template_coordinates(tpl, subject_to_template, shift_vox, displacement), float(np.mean(scales))


def _head_layers(
    outline_distance_mm: np.ndarray, spacing_mm: float, thickness_mm: tuple[float, float, float],
    modulation: np.ndarray | float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fractions inside the skull, of skull and of scalp, float32 (x, y, z).

    Shells outside the brain outline of ``thickness_mm`` (CSF, skull, scalp),
    scaled per voxel by ``modulation``.
    """
    csf_mm, skull_mm, scalp_mm = thickness_mm
    inner_skull = inside_fraction(outline_distance_mm - csf_mm * modulation, spacing_mm)
    outer_skull = inside_fraction(outline_distance_mm - (csf_mm + skull_mm) * modulation, spacing_mm)
    head = inside_fraction(outline_distance_mm - (csf_mm + skull_mm + scalp_mm) * modulation, spacing_mm)
    return inner_skull, outer_skull - inner_skull, head - outer_skull


def _random_head_layers(
    rng: np.random.Generator, outline_distance_mm: np.ndarray, spacing_mm: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Head layers of random thickness varying smoothly over the head (see :data:`LAYER_THICKNESS_MM`)."""
    modulation = np.clip(1.0 + 0.2 * smooth_random_field(rng, outline_distance_mm.shape, spacing_mm, 30.0), 0.5, None)
    thickness = tuple(rng.uniform(*LAYER_THICKNESS_MM[layer]) for layer in ("csf", "skull", "scalp"))
    return _head_layers(outline_distance_mm, spacing_mm, thickness, modulation)


def _anatomy(
    tpl: Template, coordinates: np.ndarray, scale: float, layers: Callable[[np.ndarray], tuple[np.ndarray, ...]]
) -> Anatomy:
    """Warp the template to ``coordinates``, add the head ``layers`` and fill the rest with CSF."""

    def warp(volume: np.ndarray, mode: str) -> np.ndarray:
        return ndi.map_coordinates(volume, coordinates, order=1, mode=mode, cval=0.0, output=np.float32)

    gm, wm = warp(tpl.gm, "constant"), warp(tpl.wm, "constant")
    # Template distances shrink with the brain; 'nearest' keeps far voxels in air.
    outline_distance_mm = warp(tpl.outline_distance_mm, "nearest") * np.float32(scale)
    inside_skull, skull, scalp = layers(outline_distance_mm)

    # GM and WM may not fill more than the space inside the skull; CSF fills the rest.
    parenchyma = gm + wm
    overfull = parenchyma > inside_skull
    shrink = np.divide(inside_skull, parenchyma, out=np.ones_like(parenchyma), where=overfull)
    gm *= shrink
    wm *= shrink
    csf = np.clip(inside_skull - gm - wm, 0.0, 1.0)

    mni_mm = coordinates  # reused in place: template voxels -> MNI mm (diagonal affine)
    for axis in range(3):
        mni_mm[axis] *= np.float32(tpl.affine[axis, axis])
        mni_mm[axis] += np.float32(tpl.affine[axis, 3])
    fractions = {"gm": gm, "wm": wm, "csf": csf, "skull": skull, "scalp": scalp}
    return Anatomy(fractions, outline_distance_mm, mni_mm)


def random_anatomy(rng: np.random.Generator, spacing_mm: float) -> tuple[Anatomy, np.ndarray]:
    """A randomly deformed healthy head, and its grid's voxel -> world affine (4x4, mm)."""
    tpl = template(spacing_mm)
    coordinates, scale = _random_template_coordinates(rng, tpl)
    anatomy = _anatomy(tpl, coordinates, scale, lambda distance: _random_head_layers(rng, distance, spacing_mm))
    return anatomy, tpl.affine.copy()


def mean_anatomy(spacing_mm: float) -> tuple[Anatomy, np.ndarray]:
    """The cohort's average head: undeformed brain at the mean scale, mid-range layer thicknesses."""
    tpl = template(spacing_mm)
    coordinates = _template_coordinates(tpl, np.eye(3) / MEAN_BRAIN_SCALE, np.zeros(3), None)
    thickness = tuple(float(np.mean(LAYER_THICKNESS_MM[layer])) for layer in ("csf", "skull", "scalp"))
    anatomy = _anatomy(tpl, coordinates, MEAN_BRAIN_SCALE,
                       lambda distance: _head_layers(distance, spacing_mm, thickness))
    return anatomy, tpl.affine.copy()
