"""One synthetic subject: anatomy + lesion + contrasts, deterministic per (seed, index)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lesionseg.synthetic.anatomy import mean_anatomy, random_anatomy
from lesionseg.synthetic.contrast import render_images, render_noise_free
from lesionseg.synthetic.lesions import STROKE_LABELS, TUMOUR_LABELS, add_lesion

KINDS: tuple[str, ...] = ("tumor", "stroke")
MODALITIES: dict[str, tuple[str, ...]] = {"tumor": ("flair", "t1", "t1ce", "t2"), "stroke": ("flair", "t1", "t2", "dwi")}
# Readable names of the non-zero label values, per kind.
LABEL_NAMES: dict[str, dict[int, str]] = {
    "tumor": {
        TUMOUR_LABELS["necrosis"]: "necrosis",
        TUMOUR_LABELS["edema"]: "edema",
        TUMOUR_LABELS["nonenhancing"]: "non-enhancing tumour",
        TUMOUR_LABELS["enhancing"]: "enhancing tumour",
    },
    "stroke": {STROKE_LABELS["infarct"]: "ischaemic lesion"},
}
# Coarser grids cannot hold every tumour compartment; finer ones need several GB.
SPACING_RANGE_MM = (0.5, 6.0)


@dataclass
class SyntheticSubject:
    """A synthetic multi-modal head MRI with its ground truth.

    ``images``: one float32 (x, y, z) array >= 0 per modality of ``MODALITIES[kind]``.
    ``label``: uint8 (x, y, z); tumour: 0 healthy, 1 necrosis, 2 edema,
    3 non-enhancing, 4 enhancing (BraTS 2013); stroke: 0/1.
    ``brain_mask``: uint8 0/1, GM + WM + CSF inside the skull, lesion included.
    ``affine``: 4x4 voxel -> RAS+ world (mm), isotropic.
    """

    kind: str
    images: dict[str, np.ndarray]
    label: np.ndarray
    brain_mask: np.ndarray
    affine: np.ndarray


@dataclass
class Simulation:
    """A subject together with the tissue fractions it was rendered from.

    ``tissue_fractions``: float32 (x, y, z) per tissue (``gm``, ``wm``, ``csf``,
    ``skull``, ``scalp`` and the lesion classes), summing to <= 1 (the rest is air).
    """

    subject: SyntheticSubject
    tissue_fractions: dict[str, np.ndarray]


def _checked_spacing(kind: str, spacing_mm: float) -> float:
    """``spacing_mm`` as a float; ValueError naming the allowed values for a bad kind or spacing."""
    if kind not in KINDS:
        raise ValueError(f"unknown synthetic kind {kind!r}; allowed: {', '.join(KINDS)}")
    try:
        spacing = float(spacing_mm)
    except (TypeError, ValueError):
        spacing = math.nan  # rejected below, with the same message
    low, high = SPACING_RANGE_MM
    if not low <= spacing <= high:
        raise ValueError(f"spacing_mm must be a voxel size in mm between {low} and {high}, got {spacing_mm!r}")
    return spacing


def simulate(kind: str, seed: int, index: int, spacing_mm: float = 2.0) -> Simulation:
    """Generate subject ``index`` of the cohort ``seed``, keeping its tissue fractions.

    The same (seed, index) always gives the same arrays; another index gives
    another head, lesion and acquisition.
    """
    spacing_mm = _checked_spacing(kind, spacing_mm)
    rng = np.random.default_rng([seed, index])
    anatomy, affine = random_anatomy(rng, spacing_mm)
    brain_mask = (anatomy.inside_skull > 0.5).astype(np.uint8)
    label = add_lesion(kind, rng, anatomy, spacing_mm)
    images = render_images(rng, anatomy.fractions, MODALITIES[kind], spacing_mm)
    subject = SyntheticSubject(kind=kind, images=images, label=label, brain_mask=brain_mask, affine=affine)
    return Simulation(subject=subject, tissue_fractions=anatomy.fractions)


def synthesize_subject(kind: str, seed: int, index: int, spacing_mm: float = 2.0) -> SyntheticSubject:
    """Generate subject ``index`` of the synthetic cohort ``seed`` (see :func:`simulate`)."""
    return simulate(kind, seed, index, spacing_mm).subject


@dataclass
class HeadTemplate:
    """An average head of the synthetic population, for template-based skull-stripping.

    ``image``: float32 (x, y, z), one modality, without texture, bias or noise;
    ``brain_mask``: uint8 0/1; ``affine``: 4x4 RAS+ (mm).
    """

    image: np.ndarray
    brain_mask: np.ndarray
    affine: np.ndarray


def head_template(modality: str, spacing_mm: float = 2.0) -> HeadTemplate:
    """The undeformed, lesion-free head of the cohort in ``modality`` contrast, with its brain mask."""
    if modality not in {m for mods in MODALITIES.values() for m in mods}:
        raise ValueError(f"no synthetic contrast for modality {modality!r}; allowed: {sorted(set(sum(MODALITIES.values(), ())))}")
    anatomy, affine = mean_anatomy(_checked_spacing(KINDS[0], spacing_mm))
    image = render_noise_free(anatomy.fractions, modality)
    return HeadTemplate(image, (anatomy.inside_skull > 0.5).astype(np.uint8), affine)
