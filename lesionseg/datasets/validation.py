"""Checks of one subject's inputs, run before any heavy step.

Every problem names the file and says what is wrong and what to do; nothing is
ever written next to the user's files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lesionseg.datasets.formats import SubjectFiles
from lesionseg.io import Header, ImageReadError, Volume, read_image
from lesionseg.labels import LabelScheme
from lesionseg.masks import GIVEN_MASK_THRESHOLD, mask_volume_ml

# Grids agree when spacings differ by less than this fraction and the affines
# (rotation/zoom in mm, origin in mm) by less than this many mm.
SPACING_RTOL = 1e-3
AFFINE_ATOL_MM = 1e-2

PROBLEM_FIELDS = ("dataset", "subject", "file", "problem", "hint")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one subject's input."""

    dataset: str
    subject: str
    file: str
    problem: str
    hint: str

    def as_row(self) -> dict[str, str]:
        return asdict(self)

    def __str__(self) -> str:
        return f"dataset {self.dataset!r}, subject {self.subject!r}, file {self.file}: {self.problem}. {self.hint}"


def _grid_difference(reference: Header, other: Header) -> str | None:
    spatial_ref, spatial_other = reference.shape[:3], other.shape[:3]
    if spatial_ref != spatial_other:
        return f"shape {spatial_other} differs from {spatial_ref}"
    if not np.allclose(reference.spacing[:3], other.spacing[:3], rtol=SPACING_RTOL, atol=0):
        return (
            f"voxel spacing {tuple(round(s, 4) for s in other.spacing[:3])} mm differs from "
            f"{tuple(round(s, 4) for s in reference.spacing[:3])} mm"
        )
    if not np.allclose(reference.affine, other.affine, atol=AFFINE_ATOL_MM, rtol=0):
        return "orientation or origin (affine) differs"
    return None


def _spatial_dims_problem(header: Header) -> str | None:
    shape = header.shape
    if len(shape) == 3 or (len(shape) == 4 and shape[3] == 1):
        return None
    return f"expected a 3D image, got shape {shape}"


def _read_3d(path: Path, dtype, what: str, report) -> Volume | None:
    """The image at ``path``, or None after reporting why it is unreadable or not 3D (``what``: e.g. 'label map')."""
    try:
        volume = read_image(path, dtype=dtype)
    except ImageReadError as err:
        report(path, f"unreadable {what} ({err})", f"Check that the {what} file is a complete NIfTI/MetaImage "
               "(re-copy it).")
        return None
    if problem := _spatial_dims_problem(volume.header):
        report(path, problem, f"Give the {what} as one 3D image.")
        return None
    return volume


def validate_subject(
    dataset: str, files: SubjectFiles, scheme: LabelScheme | None, reference: str | None = None,
    coregistered: bool = False, brain_volume_ml: tuple[float, float] | None = None,
) -> list[Problem]:
    """All problems of one subject (an empty list when it is usable).

    Checks: every modality present and readable, 3D, finite and not constant;
    all on the grid of the ``reference`` modality (default: the first), unless
    the dataset co-registers them (``coregistered``), since then each is
    resampled onto the reference's grid; the label map (when present) on that
    grid, integer-valued (floats holding integers are fine), with values
    allowed by ``scheme``; the brain mask (when the dataset ships one) on that
    grid, not empty, of a volume within ``brain_volume_ml``.
    """
    problems: list[Problem] = []

    def report(path: Path | str, problem: str, hint: str) -> None:
        problems.append(Problem(dataset, files.subject, str(path), problem, hint))

    grid: tuple[str, Header] | None = None
    ordered = sorted(files.images.items(), key=lambda item: item[0] != reference)  # the reference first
    for modality, path in ordered:
        if path is None:
            report(
                files.expected.get(modality, f"<{modality}>"),
                f"modality {modality!r} not found",
                "Add the file, or leave the subject out with 'exclude:' in the dataset's config.",
            )
            continue
        volume = _read_3d(path, np.float32, f"{modality} image", report)
        if volume is None:
            continue
        header = volume.header
        if grid is None:
            grid = (modality, header)
        elif not coregistered and (difference := _grid_difference(grid[1], header)):
            report(
                path,
                f"not on the grid of {grid[0]!r}, the reference modality: {difference} (the modalities are on "
                "different grids; the file itself is fine)",
                "Turn on co-registration (preprocessing: {coregister: {enabled: true}}), which registers every "
                f"modality to the reference ({grid[0]!r}) and resamples it onto its grid; or resample the files "
                "onto one grid yourself.",
            )
        data = volume.data
        finite = np.isfinite(data)
        if not finite.all():
            report(
                path,
                f"{int((~finite).sum())} voxels are NaN or infinite",
                "Fix or replace the image (NaNs often come from a failed conversion or division).",
            )
        values = data[finite]
        if values.size == 0 or values.min() == values.max():
            constant = float(values[0]) if values.size else float("nan")
            report(path, f"image is constant ({constant:g} everywhere)", "The file holds no image; re-export it.")

    if files.label is not None:
        _validate_label(files.label, grid, scheme, report)
    if files.mask is not None:
        _validate_mask(files.mask, grid, brain_volume_ml, report)
    return problems


def _non_integral_values(values: np.ndarray, limit: int = 5) -> list[float] | None:
    """Up to ``limit`` values of a float array that are not integers (None when all are)."""
    finite = np.isfinite(values)
    bad = np.unique(values[~finite | (values != np.round(np.where(finite, values, 0)))])
    return [float(v) for v in bad[:limit]] if bad.size else None


def _validate_label(path: Path, grid: tuple[str, Header] | None, scheme: LabelScheme | None, report) -> None:
    volume = _read_3d(path, None, "label map", report)
    if volume is None:
        return
    header, labels = volume.header, volume.data
    if grid is not None and (difference := _grid_difference(grid[1], header)):
        report(path, f"label map not on the grid of {grid[0]!r}: {difference}", "Resample the label map "
               f"to the grid of {grid[0]!r} with nearest-neighbour interpolation.")
    if not np.issubdtype(labels.dtype, np.integer) and (bad := _non_integral_values(labels)) is not None:
        report(path, f"label map ({labels.dtype}) holds non-integer values, e.g. {bad}",
               "Store the truth as integer labels (a label map resampled with linear interpolation has "
               "fractions: resample the original with nearest neighbour).")
        return
    if scheme is None:
        return
    present = set(np.unique(labels).astype(np.int64).tolist())
    unknown = sorted(present - scheme.allowed_values)
    if unknown:
        report(
            path,
            f"label values {unknown} are not in label scheme {scheme.name!r} (allowed {sorted(scheme.allowed_values)})",
            "Set 'labels:' of the dataset to the right scheme or to an explicit mapping of these values.",
        )


def _validate_mask(path: Path, grid: tuple[str, Header] | None, volume_range_ml: tuple[float, float] | None,
                   report) -> None:
    """The dataset's own brain mask: readable, 3D, on the reference grid, finite, not empty, plausible."""
    if not path.is_file():
        report(path, "brain mask not found", "Check the dataset's 'mask:' template, or leave the subject out "
               "with 'exclude:'.")
        return
    volume = _read_3d(path, np.float32, "brain mask", report)
    if volume is None:
        return
    if grid is not None and (difference := _grid_difference(grid[1], volume.header)):
        report(path, f"brain mask not on the grid of {grid[0]!r}: {difference}",
               f"Give the mask on the grid of {grid[0]!r} (the reference modality).")
        return
    if not np.isfinite(volume.data).all():
        report(path, "brain mask has NaN or infinite voxels", "Fix or replace the mask file.")
        return
    brain = volume.data > GIVEN_MASK_THRESHOLD
    if not brain.any():
        report(path, f"brain mask is empty (no voxel > {GIVEN_MASK_THRESHOLD:g}; maximum "
               f"{float(volume.data.max()):g})", f"The brain is where the mask is > {GIVEN_MASK_THRESHOLD:g}: give a mask with 1 (or 255) inside it.")
        return
    if volume_range_ml is not None:
        volume_ml = mask_volume_ml(brain, volume.affine)
        low, high = volume_range_ml
        if not low <= volume_ml <= high:
            report(path, f"brain mask of {volume_ml:.0f} ml, outside the plausible range {low:g}-{high:g} ml",
                   "Check that this is the subject's brain mask; if the volume is right for your data, adjust "
                   "preprocessing: skull_strip: brain_volume_ml.")
