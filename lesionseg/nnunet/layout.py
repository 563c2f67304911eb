"""A dataset's preprocessed subjects in nnU-Net v2's raw layout, and nnU-Net's outputs back as class probabilities.

nnU-Net (Isensee et al. 2021, Nature Methods) reads a raw dataset folder::

    Dataset001_lesionseg/
        dataset.json          channel names, labels (or regions), number of cases, file ending, image reader
        imagesTr/{case}_{channel:04d}.nii.gz
        labelsTr/{case}.nii.gz   consecutive label values 0..n-1

The pipeline hands it the subjects as its own preprocessing left them (co-registered, brain only, canonical
orientation, z-scored inside the brain mask and 0 outside, so nnU-Net's crop to the non-zero region is the brain
mask). Labels are the scheme's class indices; nested BraTS-like schemes are trained region-based (whole tumour,
tumour core, enhancing tumour as overlapping regions with ``regions_class_order``), as nnU-Net's own BraTS setup
does; other schemes as plain labels.

Arrays follow nnU-Net's ``NibabelIO`` convention: nibabel's ``(x, y, z)`` transposed to ``(z, y, x)``, spacing
reversed. :func:`to_nnunet_axes` / :func:`from_nnunet_axes` convert.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lesionseg.io import Volume, atomic_path, write_nifti
from lesionseg.labels import LabelScheme

DATASET_ID = 1
"""Every dataset has its own nnU-Net folders, so one id serves all."""
DATASET_NAME = f"Dataset{DATASET_ID:03d}_lesionseg"
FILE_ENDING = ".nii.gz"
IMAGE_READER = "NibabelIO"  # the axis convention of to_nnunet_axes


def region_layers(scheme: LabelScheme) -> list[tuple[str, int]] | None:
    """``[(region, class index)]`` from the largest region to the smallest when the scheme's regions are nested
    with exactly one class between each region and the next (BraTS 2021: WT ⊃ TC ⊃ ET, edema, necrosis,
    enhancing): the class is the one a voxel gets when that region is the smallest it belongs to. None when the
    scheme cannot be trained region-based (one region, regions that overlap otherwise, several classes between two
    regions as in BraTS 2013, or classes outside every region)."""
    if len(scheme.regions) < 2:
        return None
    value_class = {value: index for index, cls in enumerate(scheme.classes) for value in cls.raw_values}
    regions = sorted(((name, {value_class[v] for v in values}) for name, values in scheme.regions.items()),
                     key=lambda item: -len(item[1]))
    if regions[0][1] != set(range(1, scheme.n_classes)):
        return None
    layers = []
    for (name, outer), (_, inner) in zip(regions, [*regions[1:], (None, set())]):
        difference = outer - inner
        if not inner <= outer or len(difference) != 1:
            return None
        layers.append((name, difference.pop()))
    return layers


def dataset_json(scheme: LabelScheme, modalities: Sequence[str], n_cases: int) -> dict[str, Any]:
    """nnU-Net's ``dataset.json`` for a scheme's classes (or nested regions) and the dataset's channels.

    The images are already normalised by the pipeline; nnU-Net's z-score (inside the non-zero mask) leaves them
    nearly as they are, which is what its MRI default does too.
    """
    layers = region_layers(scheme)
    if layers is None:
        labels: dict[str, Any] = {cls.name: index for index, cls in enumerate(scheme.classes)}
    else:
        labels = {scheme.classes[0].name: 0}
        for position, (region, _) in enumerate(layers):
            labels[region] = sorted(index for _, index in layers[position:])
    description: dict[str, Any] = {
        "channel_names": {str(i): m for i, m in enumerate(modalities)},
        "labels": labels,
        "numTraining": n_cases,
        "file_ending": FILE_ENDING,
        "overwrite_image_reader_writer": IMAGE_READER,
        "description": f"written by lesionseg from its preprocessed subjects; label scheme {scheme.name}",
    }
    if layers is not None:
        description["regions_class_order"] = [index for _, index in layers]
    return description


def to_nnunet_axes(array: np.ndarray) -> np.ndarray:
    """``(c, x, y, z)`` -> nnU-Net's ``(c, z, y, x)`` (its NibabelIO convention)."""
    return np.ascontiguousarray(array.transpose(0, 3, 2, 1))


def from_nnunet_axes(array: np.ndarray) -> np.ndarray:
    """nnU-Net's ``(c, z, y, x)`` -> ``(c, x, y, z)``."""
    return np.ascontiguousarray(array.transpose(0, 3, 2, 1))


def class_probabilities(outputs: np.ndarray, scheme_layers: Sequence[int] | None, n_classes: int) -> np.ndarray:
    """nnU-Net's probabilities ``(k, ...)`` as the scheme's class probabilities ``(n_classes, ...)`` float32.

    Plain labels: nnU-Net's softmax is already that. Regions (``scheme_layers``: the class of each region, largest
    first, as :func:`region_layers`): nnU-Net's sigmoid region probabilities are made nested (each region at least
    as probable as the smaller one inside it, as its ``regions_class_order`` export treats them: a voxel is
    enhancing wherever enhancing passes 0.5) and a class gets the difference between its region and the next, so
    that every region's probability (the sum of its classes') is the nested one and the classes sum to 1.
    """
    outputs = np.asarray(outputs, dtype=np.float32)
    if scheme_layers is None:
        if outputs.shape[0] != n_classes:
            raise ValueError(f"nnU-Net gave {outputs.shape[0]} class probabilities, the scheme has {n_classes}")
        return outputs
    if outputs.shape[0] != len(scheme_layers):
        raise ValueError(f"nnU-Net gave {outputs.shape[0]} region probabilities, expected {len(scheme_layers)}")
    nested = outputs.copy()
    for i in range(len(scheme_layers) - 2, -1, -1):  # from the smallest region outwards
        np.maximum(nested[i], nested[i + 1], out=nested[i])
    classes = np.zeros((n_classes, *outputs.shape[1:]), dtype=np.float32)
    classes[0] = 1.0 - nested[0]
    for i, index in enumerate(scheme_layers):
        classes[index] = nested[i] - (nested[i + 1] if i + 1 < len(scheme_layers) else 0.0)
    return classes


def case_files(case_dir: Path, subject: str, n_channels: int) -> tuple[list[Path], Path]:
    """The channel files and the label file of one case in its export folder."""
    return [case_dir / f"{subject}_{c:04d}{FILE_ENDING}" for c in range(n_channels)], case_dir / f"{subject}{FILE_ENDING}"


def write_case(image: Volume, mask: np.ndarray, label: Volume | None, scheme: LabelScheme, subject: str,
               case_dir: Path) -> None:
    """One preprocessed subject as nnU-Net case files: a file per channel (``image.data`` ``(c, x, y, z)``, 0
    outside ``mask``) and the truth as class indices."""
    case_dir.mkdir(parents=True, exist_ok=True)
    channels, label_file = case_files(case_dir, subject, image.data.shape[0])
    for channel, path in zip(image.data, channels, strict=True):
        write_nifti(path, np.where(mask, channel, 0).astype(np.float32), image.affine)
    if label is not None:
        write_nifti(label_file, scheme.to_classes(label.data), label.affine)


def link_raw_dataset(raw_root: Path, cases: Mapping[str, Path], n_channels: int, description: Mapping[str, Any]) -> Path:
    """nnU-Net's raw dataset folder under ``raw_root``: relative symbolic links to the cases' files and
    ``dataset.json``; returns the dataset folder."""
    dataset = raw_root / DATASET_NAME
    for folder in ("imagesTr", "labelsTr"):
        (dataset / folder).mkdir(parents=True, exist_ok=True)
    for subject, case_dir in cases.items():
        channels, label = case_files(case_dir, subject, n_channels)
        for source, folder in [*((c, "imagesTr") for c in channels), (label, "labelsTr")]:
            link = dataset / folder / source.name
            link.symlink_to(os.path.relpath(source, link.parent))
    with atomic_path(dataset / "dataset.json") as tmp:
        tmp.write_text(json.dumps(description, indent=2))
    return dataset


def splits_final(folds: Sequence[tuple[Sequence[str], Sequence[str]]]) -> list[dict[str, list[str]]]:
    """nnU-Net's ``splits_final.json``: per fold, its training and validation cases (the pipeline's)."""
    return [{"train": sorted(train), "val": sorted(val)} for train, val in folds]


def export_case(image_path: Path, mask_path: Path, label_path: Path | None, scheme: LabelScheme, subject: str,
                case_dir: Path) -> None:
    """Rule nnunet_case: a preprocessed subject's files as an nnU-Net case folder (written whole or not at all:
    Snakemake removes a failed job's folder)."""
    from lesionseg.inference.steps import read_channels_first, read_mask
    from lesionseg.io import read_image

    label = read_image(label_path, dtype=None) if label_path is not None else None
    write_case(read_channels_first(image_path), read_mask(mask_path), label, scheme, subject, case_dir)


def raw_dataset(cases: Mapping[str, Path], scheme: LabelScheme, modalities: Sequence[str], raw_root: Path) -> Path:
    """Rule nnunet_raw: the cases linked into nnU-Net's raw layout under ``raw_root``, with their ``dataset.json``."""
    return link_raw_dataset(raw_root, cases, len(modalities), dataset_json(scheme, modalities, len(cases)))
