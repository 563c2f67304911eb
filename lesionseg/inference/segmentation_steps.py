"""One function per rule that works on probability maps and segmentations without a network (ensemble,
export to the original grid, post-processing): read the files, call the stage's logic, write the outputs.

Kept apart from :mod:`lesionseg.inference.steps` so that these many small jobs start without importing torch
(seconds each) and run in an environment without it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
import yaml

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
from lesionseg.io import atomic_path, read_image, write_nifti
from lesionseg.labels import LabelScheme
from lesionseg.preprocessing.geometry import GridGeometry, to_original_grid

log = logging.getLogger(__name__)

PathLike = str | os.PathLike


def ensemble_subject(member_paths: Sequence[PathLike], member_mutual_information_paths: Sequence[PathLike],
                     output: PathLike, mutual_information_out: PathLike) -> None:
    """Average the members' probability maps (all on the subject's preprocessing grid); the ensemble's mutual
    information keeps the disagreement inside each member as well as between them."""
    from lesionseg.inference.uncertainty import MeanPrediction

    first = read_probabilities(member_paths[0])
    mean = MeanPrediction()
    for path, mutual_information_path in zip(member_paths, member_mutual_information_paths, strict=True):
        member = first if path == member_paths[0] else read_probabilities(path)
        if member.data.shape != first.data.shape or not np.allclose(member.affine, first.affine, atol=1e-4):
            raise ValueError(f"{path}: its grid differs from {member_paths[0]}'s; ensemble members must come from "
                             "the same preprocessed subject")
        mean.add(member.data, read_image(mutual_information_path).data)
    write_probabilities(output, mean.mean(), first.affine)
    write_nifti(mutual_information_out, mean.mutual_information(), first.affine)


def export_subject(probabilities_path: PathLike, mutual_information_path: PathLike, geometry_path: PathLike,
                   scheme: LabelScheme, probabilities_out: PathLike, segmentation_out: PathLike,
                   entropy_out: PathLike, mutual_information_out: PathLike, min_component_mm3: float = 0.0,
                   probabilities_dtype: str = "float32") -> None:
    """Probabilities, segmentation (raw label values) and the uncertainty maps (entropy of the probabilities,
    mutual information of the network's averaged predictions) on the subject's original grid and affine."""
    from lesionseg.inference.uncertainty import normalised_entropy

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
    mutual_information = read_image(mutual_information_path).data
    if mutual_information.shape != preprocessed.shape[1:]:
        raise ValueError(f"{mutual_information_path}: shape {mutual_information.shape} differs from its "
                         f"probabilities' {preprocessed.shape[1:]} ({probabilities_path}); re-run the subject's "
                         "inference")
    mutual_information = to_original_grid(mutual_information, geometry, order=1, cval=0.0)
    write_probabilities(probabilities_out, probabilities, geometry.original_affine, probabilities_dtype)
    write_nifti(segmentation_out, segmentation, geometry.original_affine)
    write_nifti(entropy_out, normalised_entropy(probabilities), geometry.original_affine)
    write_nifti(mutual_information_out, np.clip(mutual_information, 0.0, 1.0).astype(np.float32),
                geometry.original_affine)


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
