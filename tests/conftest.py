"""Shared fixtures: tiny fake datasets in every supported layout."""

from __future__ import annotations

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
