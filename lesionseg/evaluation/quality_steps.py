"""The quality-control rules' work (:mod:`lesionseg.evaluation.quality`): read the files, compute, write.

Everything happens on the preprocessing grid, where the method's probabilities and its network's mutual
information live and the validation subjects' truth has been resampled, so that the quality model is fitted on
the same features it is applied to.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import yaml

from lesionseg.evaluation.metrics import region_dice
from lesionseg.evaluation.quality import (
    QualityModel,
    RegionFeatures,
    SubjectQuality,
    assess_subject,
    fit_quality_model,
    image_features,
    quality_table,
    segmentation_features,
)
from lesionseg.inference.outputs import read_probabilities
from lesionseg.io import atomic_path, read_image
from lesionseg.labels import LabelScheme

log = logging.getLogger(__name__)

PathLike = str | os.PathLike


def write_image_statistics(image_path: PathLike, mask_path: PathLike, modalities: Sequence[str],
                           output: PathLike) -> None:
    """A preprocessed subject's intensity statistics per modality (:func:`image_features`), as JSON."""
    image = read_image(image_path)
    brain = read_image(mask_path, dtype=None).data > 0
    statistics = image_features(image.data, brain, modalities)
    with atomic_path(output) as tmp:
        tmp.write_text(json.dumps(statistics, indent=1))


def read_image_statistics(path: PathLike) -> dict[str, dict[str, float]]:
    return json.loads(Path(path).read_text())


def subject_features(probabilities_path: PathLike, mutual_information_path: PathLike, scheme: LabelScheme,
                     network_probabilities_path: PathLike | None = None) -> tuple[dict[str, RegionFeatures], np.ndarray]:
    """A subject's features under a method (after the CRF: with its network's probabilities) and its predicted
    label map (raw values)."""
    probabilities = read_probabilities(probabilities_path)
    mutual_information = read_image(mutual_information_path).data
    network = None if network_probabilities_path is None else read_probabilities(network_probabilities_path).data
    voxel_ml = float(np.prod(probabilities.spacing[:3])) / 1000.0
    features = segmentation_features(probabilities.data, mutual_information, scheme, voxel_ml, network)
    return features, scheme.to_raw(probabilities.data.argmax(axis=0).astype(np.uint8))


def fit_quality_model_on_validation(
    validation_subjects: Sequence[str], probability_paths: Sequence[PathLike],
    mutual_information_paths: Sequence[PathLike], label_paths: Sequence[PathLike],
    training_label_paths: Sequence[PathLike], training_statistics_paths: Sequence[PathLike],
    scheme: LabelScheme, output: PathLike, network_probability_paths: Sequence[PathLike] = (),
) -> QualityModel:
    """Fit a method's quality model and write it as YAML (the features, true Dice and training ranges it used);
    ``network_probability_paths``: for a method after the CRF, its network's probabilities of the same subjects."""
    regions = list(scheme.regions)
    features, true_dice = {}, {}
    networks = list(network_probability_paths) or [None] * len(validation_subjects)
    for subject, probabilities, mutual_information, label, network in zip(
            validation_subjects, probability_paths, mutual_information_paths, label_paths, networks, strict=True):
        features[subject], predicted = subject_features(probabilities, mutual_information, scheme, network)
        true_dice[subject] = region_dice(predicted, read_image(label, dtype=None).data, scheme)
    training_volumes = []
    for path in training_label_paths:
        label = read_image(path, dtype=None)
        voxel_ml = float(np.prod(label.spacing[:3])) / 1000.0
        training_volumes.append({r: float(np.count_nonzero(scheme.region_mask(label.data, r))) * voxel_ml
                                 for r in regions})
    training_images = [read_image_statistics(path) for path in training_statistics_paths]
    model = fit_quality_model(features, true_dice, training_volumes, training_images, regions)
    for region, fit in model.dice.items():
        how = f"{fit.intercept:+.3f} + {fit.slope:.3f} x expected" if fit.fitted else "the expected Dice, unfitted"
        log.info("%s: predicted Dice = %s (%d validation subjects)", region, how, fit.subjects)
    record = model.to_mapping()
    record["validation"] = {s: {"true_dice": {r: round(float(d), 6) for r, d in true_dice[s].items()},
                                "expected_dice": {r: round(f.expected_dice, 6) for r, f in features[s].items()}}
                            for s in validation_subjects}
    with atomic_path(output) as tmp:
        tmp.write_text(yaml.safe_dump(record, sort_keys=False))
    return model


def read_quality_model(path: PathLike) -> QualityModel:
    with open(path) as stream:
        return QualityModel.from_mapping(yaml.safe_load(stream))


def assess_prediction(subject: str, probabilities_path: PathLike, mutual_information_path: PathLike,
                      image_path: PathLike, mask_path: PathLike, modalities: Sequence[str], scheme: LabelScheme,
                      model: Mapping[str, Any] | None, output: PathLike,
                      network_probabilities_path: PathLike | None = None) -> SubjectQuality:
    """One subject's quality under a model file's quality model (its YAML mapping; None: unfitted, no
    reference), from its preprocessing-grid outputs and image (lesionseg predict); written as JSON."""
    quality_model = (QualityModel.from_mapping(model) if model is not None
                     else fit_quality_model({}, {}, [], [], list(scheme.regions)))
    features, _ = subject_features(probabilities_path, mutual_information_path, scheme, network_probabilities_path)
    image = read_image(image_path)
    statistics = image_features(image.data, read_image(mask_path, dtype=None).data > 0, modalities)
    quality = assess_subject(subject, features, statistics, quality_model)
    with atomic_path(output) as tmp:
        tmp.write_text(json.dumps({**quality_table([quality])[0], "quality_model": "fitted" if model else "none"},
                                  indent=1))
    return quality


def assess_method(subjects: Sequence[str], probability_paths: Sequence[PathLike],
                  mutual_information_paths: Sequence[PathLike], statistics_paths: Sequence[PathLike],
                  model_path: PathLike, scheme: LabelScheme, output: PathLike,
                  network_probability_paths: Sequence[PathLike] = ()) -> pd.DataFrame:
    """Every subject's predicted Dice, score and flags under a method (after the CRF: with its network's
    probabilities), the subjects to review first, as CSV."""
    model = read_quality_model(model_path)
    assessed = []
    networks = list(network_probability_paths) or [None] * len(subjects)
    for subject, probabilities, mutual_information, statistics, network in zip(
            subjects, probability_paths, mutual_information_paths, statistics_paths, networks, strict=True):
        features, _ = subject_features(probabilities, mutual_information, scheme, network)
        assessed.append(assess_subject(subject, features, read_image_statistics(statistics), model))
    table = pd.DataFrame(quality_table(assessed))
    flagged = table[table["flagged"]] if not table.empty else table
    log.info("%d of %d subjects flagged for review%s", len(flagged), len(table),
             "".join(f"\n  {row.subject}: {row.reasons}" for row in flagged.itertuples()))
    with atomic_path(output) as tmp:
        table.to_csv(tmp, index=False)
    return table
