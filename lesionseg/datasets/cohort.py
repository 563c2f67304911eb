"""Writing the built-in synthetic cohort in the naming of the release it imitates."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from lesionseg.datasets import SYNTHETIC_KINDS, synthetic_subject_files, synthetic_subject_ids
from lesionseg.datasets.formats import SubjectFiles
from lesionseg.io import write_nifti
from lesionseg.labels import LABEL_SCHEMES

log = logging.getLogger(__name__)


def write_synthetic_subject(
    kind: str, seed: int, index: int, spacing_mm: float, root: Path, qc_png: Path | None = None
) -> SubjectFiles:
    """Generate subject ``index`` of a cohort and write it below ``root`` (and its QC picture)."""
    from lesionseg.synthetic import save_qc_png, synthesize_subject

    subject_id = synthetic_subject_ids(kind, index + 1)[index]
    files = synthetic_subject_files(kind, Path(root), subject_id)
    subject = synthesize_subject(kind, seed=seed, index=index, spacing_mm=spacing_mm)
    for modality, path in files.images.items():
        write_nifti(path, subject.images[modality], subject.affine, np.float32)
    write_nifti(files.label, subject.label, subject.affine, np.uint8)
    write_nifti(files.extras["brain_mask"], subject.brain_mask, subject.affine, np.uint8)
    voxel_ml = spacing_mm**3 / 1000
    log.info(
        "%s: %s, grid %s of %g mm, brain %.0f ml, lesion %.1f ml (labels %s), written below %s",
        subject_id, kind, subject.label.shape, spacing_mm, subject.brain_mask.sum() * voxel_ml,
        (subject.label > 0).sum() * voxel_ml, sorted(np.unique(subject.label).tolist()), root,
    )
    if qc_png is not None:
        save_qc_png(subject, qc_png, LABEL_SCHEMES[SYNTHETIC_KINDS[kind]["labels"]],
                    title=f"{subject_id} ({kind}, seed {seed}, {spacing_mm:g} mm)")
    return files


def cohort_format(kind: str) -> str:
    """The release layout a synthetic cohort of ``kind`` is written in."""
    return SYNTHETIC_KINDS[kind]["layout"]
