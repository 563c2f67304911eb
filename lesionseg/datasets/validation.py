"""Checks of one subject's inputs, run before any heavy step.

Every problem names the file and says what is wrong and what to do; nothing is
ever written next to the user's files.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lesionseg.datasets.formats import SubjectFiles
from lesionseg.io import Header, ImageReadError, read_image
from lesionseg.labels import LabelScheme

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


def validate_subject(
    dataset: str, files: SubjectFiles, scheme: LabelScheme | None
) -> list[Problem]:
    """All problems of one subject (an empty list when it is usable).

    Checks: every modality present and readable, 3D, on one grid (shape, spacing,
    affine within tolerance), finite and not constant; the label (when present)
    on the same grid, integer-valued, with values allowed by ``scheme``.
    """
    problems: list[Problem] = []

    def report(path: Path | str, problem: str, hint: str) -> None:
        problems.append(Problem(dataset, files.subject, str(path), problem, hint))

    reference: tuple[str, Header] | None = None
    for modality, path in files.images.items():
        if path is None:
            report(
                files.expected.get(modality, f"<{modality}>"),
                f"modality {modality!r} not found",
                "Add the file, or leave the subject out with 'exclude:' in the dataset's config.",
            )
            continue
        try:
            volume = read_image(path, dtype=np.float32)
        except ImageReadError as err:
            report(path, f"unreadable ({err})", "Check that the file is a complete NIfTI/MetaImage (re-copy it).")
            continue
        header = volume.header
        if problem := _spatial_dims_problem(header):
            report(path, problem, "Give one 3D volume per modality.")
            continue
        if reference is None:
            reference = (modality, header)
        elif difference := _grid_difference(reference[1], header):
            report(
                path,
                f"not on the grid of {reference[0]!r}: {difference}",
                "Co-register and resample all modalities of a subject to one grid "
                "(or enable co-registration in 'preprocessing').",
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
        _validate_label(files.label, reference, scheme, report)
    return problems


def _validate_label(path: Path, reference: tuple[str, Header] | None, scheme: LabelScheme | None, report) -> None:
    try:
        volume = read_image(path, dtype=None)
    except ImageReadError as err:
        report(path, f"unreadable label map ({err})", "Check that the label file is complete (re-copy it).")
        return
    header, labels = volume.header, volume.data
    if problem := _spatial_dims_problem(header):
        report(path, problem, "Give the truth as one 3D label map.")
        return
    if reference is not None and (difference := _grid_difference(reference[1], header)):
        report(path, f"label map not on the grid of {reference[0]!r}: {difference}", "Resample the label map "
               "to the images' grid with nearest-neighbour interpolation.")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.isfinite(labels).all() or not np.array_equal(labels, np.round(labels)):
            report(path, "label map holds non-integer values", "Store the truth as integer labels.")
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
