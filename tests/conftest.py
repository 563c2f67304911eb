"""Shared fixtures: tiny fake datasets in every supported layout."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lesionseg.io import write_nifti

REPO = Path(__file__).resolve().parents[1]
SHAPE = (12, 10, 8)
AFFINE = np.diag([1.0, 1.0, 1.0, 1.0])


def random_image(seed: int, shape=SHAPE) -> np.ndarray:
    return np.random.default_rng(seed).normal(100, 20, size=shape).astype(np.float32)


def label_map(values=(0, 1, 2, 4), shape=SHAPE) -> np.ndarray:
    label = np.zeros(shape, dtype=np.uint8)
    for i, v in enumerate(values):
        label[i, 0, 0] = v
    return label


def write_image(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    """Write NIfTI or, for .mha, MetaImage with the same geometry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".mha"):
        image = sitk.GetImageFromArray(np.transpose(data, (2, 1, 0)))
        image.SetSpacing([float(s) for s in np.linalg.norm(affine[:3, :3], axis=0)])
        sitk.WriteImage(image, str(path))
        return path
    return write_nifti(path, data, affine)


def make_prefixed(root: Path, subjects, modalities, sep: str, label_values=(0, 1, 2, 4), grade=None) -> None:
    for i, s in enumerate(subjects):
        folder = root / grade / s if grade else root / s
        for j, m in enumerate(modalities):
            write_image(folder / f"{s}{sep}{m}.nii.gz", random_image(10 * i + j))
        write_image(folder / f"{s}{sep}seg.nii.gz", label_map(label_values))


def make_vsd(root: Path, cases, tags, suffix: str, truth_prefix="VSD.Brain_3more.XX.O.OT", label_values=(0, 1)):
    image_id = 100
    for i, case in enumerate(cases):
        for j, tag in enumerate(tags):
            image_id += 1
            folder = root / case / f"VSD.Brain.XX.O.MR_{tag}.{image_id}"
            write_image(folder / f"{folder.name}{suffix}", random_image(10 * i + j))
        image_id += 1
        folder = root / case / f"{truth_prefix}.{image_id}"
        write_image(folder / f"{folder.name}{suffix}", label_map(label_values))


@pytest.fixture
def brats2021_root(tmp_path: Path) -> Path:
    root = tmp_path / "brats21"
    make_prefixed(root, [f"BraTS2021_{i:05d}" for i in range(4)], ["flair", "t1", "t1ce", "t2"], "_")
    return root


# --- Snakemake runs on a tiny cohort (integration tests) ---------------------------------------------

SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2"]


def run(workdir: Path, config: str, *args: str, timeout: float = 3600) -> subprocess.CompletedProcess:
    """Snakemake in ``workdir`` with ``config`` (written to workdir/config.yaml) and extra arguments."""
    (workdir / "config.yaml").write_text(config)
    return subprocess.run(
        [*SNAKEMAKE, *args, "--directory", str(workdir), "--configfile", str(workdir / "config.yaml")],
        capture_output=True, text=True, timeout=timeout,
    )


def jobs_planned(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Job counts of a dry run's 'Job stats' table ({} when there is nothing to do)."""
    assert result.returncode == 0, result.stderr[-3000:]
    table = result.stdout.split("Job stats:")[-1] if "Job stats:" in result.stdout else ""
    counts = {}
    for line in table.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


# A user's dataset in a folder of their own (generic format), made of synthetic heads with skulls.
COHORT_CONFIG = """datasets:
  cohort:
    format: generic
    root: {root}
    images: "{{subject}}/{{subject}}_{{modality}}.nii.gz"
    label: "{{subject}}/{{subject}}_seg.nii.gz"
    modalities: [flair, t1, t1ce, t2]
    labels: brats2013
    split: {{file: {root}/split.tsv}}
    models: [tiny]
    preprocessing:
      skull_strip: {{method: template, template: synthetic, registration_spacing_mm: 4.0}}
      bias_correction: {{iterations: [20, 20]}}
      resample: {{spacing_mm: 4.0}}
models:
  tiny:
    architecture: deepmedic
    parameters: {{maps: [4, 4, 4, 4, 4, 4, 4, 4], fc_maps: [8, 8]}}
    training: {{phases: [1, 2], epochs: {epochs}, batches_per_epoch: 2, batch_size: 2, samples_per_subject: 50,
               phase2: {{epochs: 1}}}}
crf:
  parameters: {{iterations: 2}}
  tune: {{trials: 2}}
"""
COHORT_SPLIT = {"SynthTumor_000": "train", "SynthTumor_001": "val", "SynthTumor_002": "test", "SynthTumor_003": "test"}


def write_cohort_subject(root: Path, index: int, split: str) -> None:
    """Add synthetic subject ``index`` to a cohort folder and to its split file."""
    from lesionseg.datasets.cohort import write_synthetic_subject

    files = write_synthetic_subject("tumor", 0, index, 4.0, root)
    files.extras["brain_mask"].unlink()  # a user's dataset has no true brain mask
    split_file = root / "split.tsv"
    if not split_file.exists():
        split_file.write_text("subject\tsplit\n")
    with split_file.open("a") as handle:
        handle.write(f"{files.subject}\t{split}\n")


def data_digests(root: Path) -> dict[str, str]:
    """SHA-256 of every file below ``root``, by relative path."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def cohort_config(root: Path | str = "data", epochs: int = 2) -> str:
    return COHORT_CONFIG.format(root=root, epochs=epochs)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory) -> Path:
    """The whole workflow run locally, preprocessing to report, on four subjects (train, val, test, test) in
    ``data/`` (a folder the workflow only reads; the config names it relative to the working directory).
    Copy it (shutil.copytree) before changing anything in it."""
    workdir = tmp_path_factory.mktemp("finished_run")
    for index, split in enumerate(COHORT_SPLIT.values()):
        write_cohort_subject(workdir / "data", index, split)
    (workdir / "data_digests.json").write_text(json.dumps(data_digests(workdir / "data")))
    result = run(workdir, cohort_config())
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir
