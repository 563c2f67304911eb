"""One function per inference rule: read the files, call the stage's logic, write the outputs.

Probability maps between the rules (network, ensemble, CRF) live on the
preprocessing grid as float32; only :func:`export_subject` goes back to the
subject's original grid.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from lesionseg.crf import CRFParameters, dense_crf
from lesionseg.crf.tuning import ValidationCase, tune_crf
from lesionseg.inference.dense import default_device, predict_volume
from lesionseg.inference.outputs import (
    classes_from_probabilities,
    probabilities_on_original_grid,
    read_probabilities,
    segmentation_from_probabilities,
    write_probabilities,
)
from lesionseg.inference.postprocessing import (
    PostprocessingChoice,
    ValidationSegmentation,
    apply_choice,
    choose_postprocessing,
)
from lesionseg.io import Volume, atomic_path, read_image, write_nifti
from lesionseg.labels import LabelScheme
from lesionseg.preprocessing.geometry import GridGeometry
from lesionseg.training.checkpoints import build_networks, check_fingerprint, read_model_file

log = logging.getLogger(__name__)

PathLike = str | os.PathLike


def read_channels_first(path: PathLike) -> Volume:
    """A preprocessed image ``(x, y, z[, c])`` as ``(c, x, y, z)`` float32."""
    volume = read_image(path)
    data = volume.data if volume.data.ndim == 4 else volume.data[..., None]
    return Volume(np.ascontiguousarray(np.moveaxis(data, -1, 0)), volume.affine)


def select_channels(image: Volume, channels: Sequence[int] | None) -> Volume:
    """The image's ``channels`` in that order (None: all, as stored)."""
    if channels is None:
        return image
    return Volume(np.ascontiguousarray(image.data[list(channels)]), image.affine)


def read_mask(path: PathLike) -> np.ndarray:
    return read_image(path, dtype=None).data > 0


def network_probabilities(names: Sequence[str], networks: Sequence[torch.nn.Module], image: np.ndarray,
                          mask: np.ndarray, device: torch.device, settings: Mapping[str, Any],
                          progress: bool = True) -> np.ndarray:
    """Dense inference of networks on one image ``(c, x, y, z)``: their mean probabilities (float32, summed in
    float64 as :func:`ensemble_subject` averages files)."""
    segment = settings["segment_size"]
    total = None
    for name, network in zip(names, networks, strict=True):
        probabilities = predict_volume(
            network, image, mask, device, tile_output=None if segment == "auto" else int(segment),
            batch_size=settings["batch_size"], precision=settings["precision"],
            memory_budget_mb=settings["memory_budget_mb"], progress=progress,
        )
        if len(networks) == 1:
            return probabilities
        log.info("network %s done", name)
        total = probabilities.astype(np.float64) if total is None else total + probabilities
    return (total / len(networks)).astype(np.float32)


def load_networks(model_paths: Sequence[PathLike], fingerprint: str | None,
                  device: torch.device) -> tuple[list[str], list[torch.nn.Module], dict[str, Any]]:
    """The networks of one or more model files (the k fold models of a model), their names and the first
    file's contents; refuses files whose training data were preprocessed otherwise."""
    names, networks, first = [], [], None
    for path in model_paths:
        contents = read_model_file(path)
        check_fingerprint(path, contents, fingerprint)
        names += [f"{path}:{record['name']}" for record in contents["networks"]]
        networks += build_networks(contents, device)
        first = first or contents
    assert first is not None, "no model file"
    return names, networks, first


def to_dataset_classes(probabilities: np.ndarray, classes: Sequence[int] | None, n_classes: int) -> np.ndarray:
    """A model's class probabilities as those of a dataset's classes (``classes[i]``: the dataset class of model
    class i); model classes that map to one dataset class add up."""
    if classes is None:
        return probabilities
    mapped = np.zeros((n_classes, *probabilities.shape[1:]), dtype=np.float32)
    for source, target in enumerate(classes):
        mapped[target] += probabilities[source]
    return mapped


def infer_subject(model_paths: Sequence[PathLike], image_path: PathLike, mask_path: PathLike, output: PathLike,
                  fingerprint: str | None, settings: Mapping[str, Any], threads: int = 1,
                  channels: Sequence[int] | None = None, classes: Sequence[int] | None = None,
                  n_classes: int | None = None) -> None:
    """Dense inference of saved models (their mean) on one preprocessed subject.

    ``channels`` picks the image's channels in the model's order, ``classes`` maps the model's classes onto
    the dataset's ``n_classes`` (a model trained on another dataset); None: the same.
    """
    torch.set_num_threads(threads)
    device = default_device()
    names, networks, contents = load_networks(model_paths, fingerprint, device)
    image = select_channels(read_channels_first(image_path), channels)
    data = image.data
    expected = contents["networks"][0]["in_channels"]
    if data.shape[0] != expected:
        raise ValueError(f"{image_path}: {data.shape[0]} channels, but the model {model_paths[0]} was trained on "
                         f"{expected} ({', '.join(contents['modalities'])})")
    start = time.perf_counter()
    probabilities = network_probabilities(names, networks, data, read_mask(mask_path), device, settings)
    log.info("%s: dense inference of %s voxels on %s in %.1f s", ", ".join(map(str, model_paths)),
             "x".join(map(str, data.shape[1:])), device, time.perf_counter() - start)
    n_classes = n_classes or probabilities.shape[0]
    write_probabilities(output, to_dataset_classes(probabilities, classes, n_classes), image.affine)


def ensemble_subject(member_paths: Sequence[PathLike], output: PathLike) -> None:
    """Average the members' probability maps (all on the subject's preprocessing grid)."""
    first = read_probabilities(member_paths[0])
    total = first.data.astype(np.float64)
    for path in member_paths[1:]:
        member = read_probabilities(path)
        if member.data.shape != first.data.shape or not np.allclose(member.affine, first.affine, atol=1e-4):
            raise ValueError(f"{path}: its grid differs from {member_paths[0]}'s; ensemble members must come from "
                             "the same preprocessed subject")
        total += member.data
    write_probabilities(output, (total / len(member_paths)).astype(np.float32), first.affine)


def crf_subject(probabilities_path: PathLike, image_path: PathLike, mask_path: PathLike, output: PathLike,
                parameters: CRFParameters, threads: int = 1, channels: Sequence[int] | None = None) -> None:
    """The 3D fully connected CRF on a network's probabilities, features from the preprocessed image (its
    ``channels``, in the network's order, for a network trained on other data: its parameters were tuned so)."""
    torch.set_num_threads(threads)
    probabilities = read_probabilities(probabilities_path)
    image = select_channels(read_channels_first(image_path), channels)
    spacing = tuple(float(s) for s in np.linalg.norm(image.affine[:3, :3], axis=0))
    start = time.perf_counter()
    try:
        marginals = dense_crf(probabilities.data, image.data, spacing, parameters, mask=read_mask(mask_path),
                              device=default_device())
    except ValueError as err:
        raise ValueError(f"CRF of {probabilities_path} with the image {image_path}: {err}") from err
    log.info("%s: CRF in %.1f s (%s)", probabilities_path, time.perf_counter() - start, parameters)
    write_probabilities(output, marginals, probabilities.affine)


def export_subject(probabilities_path: PathLike, geometry_path: PathLike, scheme: LabelScheme,
                   probabilities_out: PathLike, segmentation_out: PathLike, min_component_mm3: float = 0.0,
                   probabilities_dtype: str = "float32") -> None:
    """Probabilities and segmentation (raw label values) on the subject's original grid and affine."""
    geometry = GridGeometry.from_json(geometry_path)
    preprocessed = read_probabilities(probabilities_path).data
    if preprocessed.shape[1:] != tuple(geometry.shape):
        raise ValueError(f"{probabilities_path}: shape {preprocessed.shape[1:]} differs from the preprocessing grid "
                         f"{tuple(geometry.shape)} of {geometry_path}; re-run the subject's inference (its "
                         "preprocessing changed)")
    probabilities = probabilities_on_original_grid(preprocessed, geometry)
    spacing = tuple(float(s) for s in np.linalg.norm(geometry.original_affine[:3, :3], axis=0))
    segmentation, removed = segmentation_from_probabilities(probabilities, scheme, spacing, min_component_mm3)
    if removed:
        log.info("removed %d lesion components smaller than %g mm^3", removed, min_component_mm3)
    write_probabilities(probabilities_out, probabilities, geometry.original_affine, probabilities_dtype)
    write_nifti(segmentation_out, segmentation, geometry.original_affine)


def tune_crf_parameters(names: Sequence[str], probability_paths: Sequence[PathLike], image_paths: Sequence[PathLike],
                        mask_paths: Sequence[PathLike], label_paths: Sequence[PathLike], scheme: LabelScheme,
                        base: CRFParameters, trials: int, seed: int, parameters_out: PathLike, search_out: PathLike,
                        threads: int = 1, image_channels: Sequence[int] | None = None) -> None:
    """Random search of the CRF parameters on validation subjects; writes the best (YAML) and every trial (CSV)."""
    torch.set_num_threads(threads)
    cases = []
    for name, probabilities, image, mask, label in zip(names, probability_paths, image_paths, mask_paths,
                                                      label_paths, strict=True):
        channels = select_channels(read_channels_first(image), image_channels)
        cases.append(ValidationCase(
            name, read_probabilities(probabilities).data, channels.data, read_image(label, dtype=None).data,
            read_mask(mask), tuple(float(s) for s in np.linalg.norm(channels.affine[:3, :3], axis=0)),
        ))
    best, rows = tune_crf(cases, scheme, base, trials, seed)
    best_row = max(rows[1:], key=lambda row: row["mean_dice"])
    with atomic_path(search_out) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    with atomic_path(parameters_out) as tmp:
        tmp.write_text(yaml.safe_dump({
            "parameters": best.to_mapping(),
            "validation_subjects": list(names),
            "mean_dice": round(best_row["mean_dice"], 6),
            "network_mean_dice": round(rows[0]["mean_dice"], 6),
            "trials": trials,
            "seed": seed,
        }, sort_keys=False))


def read_crf_parameters(path: PathLike) -> CRFParameters:
    """The parameters chosen by :func:`tune_crf_parameters`."""
    with open(path) as stream:
        return CRFParameters.from_mapping(yaml.safe_load(stream)["parameters"])


def _with_mean(dice: Mapping[str, float]) -> dict[str, float]:
    """Dice per region and their mean, rounded for YAML."""
    rounded = {region: round(d, 6) for region, d in dice.items()}
    return {**rounded, "mean": round(float(np.mean(list(dice.values()))), 6)}


def choose_postprocessing_on_validation(names: Sequence[str], probability_paths: Sequence[PathLike],
                                        label_paths: Sequence[PathLike], scheme: LabelScheme,
                                        min_component_mm3: float, candidates_mm3: Sequence[float],
                                        output: PathLike) -> None:
    """A method's post-processing chosen on validation subjects (preprocessing grid), written as YAML: the
    choice per region, the mean validation Dice per region without and with it, and every candidate's mean Dice.

    ``min_component_mm3`` is the export's removal of small lesion components, so the choice starts from the
    segmentation the method exports.
    """
    cases = []
    for name, probabilities_path, label_path in zip(names, probability_paths, label_paths, strict=True):
        probabilities = read_probabilities(probabilities_path)
        classes, _ = classes_from_probabilities(probabilities.data, probabilities.spacing, min_component_mm3)
        truth = read_image(label_path, dtype=None).data
        cases.append(ValidationSegmentation.cropped(name, classes, truth, probabilities.spacing))
    search = choose_postprocessing(cases, scheme, candidates_mm3)
    for region, operation in search.choice.operations.items():
        log.info("%s: %s (mean validation Dice %.4f -> %.4f)", region, operation.describe(),
                 search.dice_before[region], search.dice_after[region])
    with atomic_path(output) as tmp:
        tmp.write_text(yaml.safe_dump({
            "choice": search.choice.to_mapping(),
            "validation_subjects": list(names),
            "validation_dice": {"before": _with_mean(search.dice_before), "after": _with_mean(search.dice_after)},
            "candidates_mm3": [float(v) for v in candidates_mm3],
            "candidates": [{**row, "mean_dice": round(row["mean_dice"], 6)} for row in search.candidates],
        }, sort_keys=False))


def read_postprocessing_choice(path: PathLike) -> PostprocessingChoice:
    """The choice written by :func:`choose_postprocessing_on_validation`."""
    with open(path) as stream:
        return PostprocessingChoice.from_mapping(yaml.safe_load(stream)["choice"])


def postprocess_subject(segmentation_path: PathLike, choice_path: PathLike, scheme: LabelScheme,
                        output: PathLike) -> None:
    """A method's segmentation (raw label values, original grid) with the post-processing chosen for it."""
    segmentation = read_image(segmentation_path, dtype=None)
    classes = scheme.to_classes(segmentation.data)
    processed = apply_choice(classes, scheme, read_postprocessing_choice(choice_path), segmentation.spacing)
    log.info("post-processing set %d voxels to background", int(np.count_nonzero(processed != classes)))
    write_nifti(output, scheme.to_raw(processed), segmentation.affine)
