"""One function per rule that runs a network or the CRF (inference, CRF, CRF tuning): read the files, call
the stage's logic, write the outputs. The rules without a network are in
:mod:`lesionseg.inference.segmentation_steps`.

Probability maps between the rules (network, ensemble, CRF) live on the
preprocessing grid as float32; only the export goes back to the subject's original grid.

Each step imports the stages it runs (torch, the networks, the CRF and its numba kernels, pandas) itself, so that a
job that only reads images with :func:`read_channels_first` and :func:`read_mask` (nnunet_case, once per
subject) starts without them, and each job imports only what its own step needs.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from lesionseg.io import Volume, atomic_path, read_image, write_nifti
from lesionseg.labels import LabelScheme

if TYPE_CHECKING:
    import torch

    from lesionseg.crf import CRFParameters

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
                          progress: bool = True, spacing: Sequence[float] | None = None
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Dense inference of networks on one image ``(c, x, y, z)`` of voxel sizes ``spacing`` (mm): their mean
    probabilities (float32, summed in float64 as :func:`ensemble_subject` averages files) and the mutual
    information between the averaged predictions (:mod:`lesionseg.inference.uncertainty`).

    With ``settings["mirror_axes"]`` every network also segments the image flipped along each combination of
    those axes, and its flipped-back predictions join the mean (test-time mirroring). nnU-Net networks are
    applied by nnU-Net's predictor with ``settings["nnunet"]`` (its own mirroring, tile_step_size): one
    prediction each.
    """
    from lesionseg.inference.dense import predict_volume
    from lesionseg.inference.uncertainty import MeanPrediction, flip_spatial, mirror_flips
    from lesionseg.nnunet.prediction import NnUNetModel

    segment = settings["segment_size"]
    flips = mirror_flips(settings.get("mirror_axes", ()))
    mean = MeanPrediction()
    for name, network in zip(names, networks, strict=True):
        if isinstance(network, NnUNetModel):
            if spacing is None:
                raise ValueError(f"{name}: an nnU-Net network needs the image's voxel sizes")
            mean.add(network.predict(image, spacing, device, settings.get("nnunet", {}), progress=progress))
            continue
        for flip in flips:
            probabilities = predict_volume(
                network, flip_spatial(image, flip), flip_spatial(mask, flip, channels_first=False), device,
                tile_output=None if segment == "auto" else int(segment), batch_size=settings["batch_size"],
                precision=settings["precision"], memory_budget_mb=settings["memory_budget_mb"], progress=progress,
            )
            mean.add(flip_spatial(probabilities, flip))
        if len(networks) > 1:
            log.info("network %s done", name)
    if len(flips) > 1:
        log.info("test-time mirroring: %d predictions per network (flips %s)", len(flips), flips)
    return mean.mean(), mean.mutual_information()


def load_networks(model_paths: Sequence[PathLike], fingerprint: str | None,
                  device: torch.device) -> tuple[list[str], list[torch.nn.Module], dict[str, Any]]:
    """The networks of one or more model files (the k fold models of a model), their names and the first
    file's contents; refuses files whose training data were preprocessed otherwise."""
    from lesionseg.training.checkpoints import build_networks, check_fingerprint, read_model_file

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
                  mutual_information_out: PathLike, fingerprint: str | None, settings: Mapping[str, Any],
                  threads: int = 1, channels: Sequence[int] | None = None, classes: Sequence[int] | None = None,
                  n_classes: int | None = None) -> None:
    """Dense inference of saved models (their mean) on one preprocessed subject; writes the probabilities and the
    mutual information between the averaged predictions (fold models, networks, mirrorings).

    ``channels`` picks the image's channels in the model's order, ``classes`` maps the model's classes onto
    the dataset's ``n_classes`` (a model trained on another dataset); None: the same.
    """
    import torch

    from lesionseg.inference.dense import default_device
    from lesionseg.inference.outputs import write_probabilities

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
    spacing = tuple(float(s) for s in np.linalg.norm(image.affine[:3, :3], axis=0))
    probabilities, mutual_information = network_probabilities(names, networks, data, read_mask(mask_path), device,
                                                              settings, spacing=spacing)
    log.info("%s: dense inference of %s voxels on %s in %.1f s", ", ".join(map(str, model_paths)),
             "x".join(map(str, data.shape[1:])), device, time.perf_counter() - start)
    n_classes = n_classes or probabilities.shape[0]
    write_probabilities(output, to_dataset_classes(probabilities, classes, n_classes), image.affine)
    write_nifti(mutual_information_out, mutual_information, image.affine)


def crf_subject(probabilities_path: PathLike, image_path: PathLike, mask_path: PathLike, output: PathLike,
                parameters: CRFParameters, threads: int = 1, channels: Sequence[int] | None = None) -> None:
    """The 3D fully connected CRF on a network's probabilities, features from the preprocessed image (its
    ``channels``, in the network's order, for a network trained on other data: its parameters were tuned so)."""
    import torch

    from lesionseg.crf import dense_crf
    from lesionseg.inference.dense import default_device
    from lesionseg.inference.outputs import read_probabilities, write_probabilities

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


def tune_crf_parameters(names: Sequence[str], probability_paths: Sequence[PathLike], image_paths: Sequence[PathLike],
                        mask_paths: Sequence[PathLike], label_paths: Sequence[PathLike], scheme: LabelScheme,
                        base: CRFParameters, trials: int, seed: int, parameters_out: PathLike, search_out: PathLike,
                        threads: int = 1, image_channels: Sequence[int] | None = None,
                        weights_per_sigma_draw: int = 1) -> None:
    """Random search of the CRF parameters on validation subjects (:func:`~lesionseg.crf.tuning.tune_crf`); writes
    the best (YAML) and every trial (CSV)."""
    import pandas as pd
    import torch

    from lesionseg.crf.tuning import ValidationCase, tune_crf
    from lesionseg.inference.dense import default_device
    from lesionseg.inference.outputs import read_probabilities

    torch.set_num_threads(threads)
    cases = []
    for name, probabilities, image, mask, label in zip(names, probability_paths, image_paths, mask_paths,
                                                      label_paths, strict=True):
        channels = select_channels(read_channels_first(image), image_channels)
        cases.append(ValidationCase(
            name, read_probabilities(probabilities).data, channels.data, read_image(label, dtype=None).data,
            read_mask(mask), tuple(float(s) for s in np.linalg.norm(channels.affine[:3, :3], axis=0)),
        ))
    device = default_device()  # as rule crf runs it: the parameters are tuned for the CRF that will use them
    log.info("CRF parameter search on %s: %d trials, %d validation subjects", device, trials, len(cases))
    best, rows = tune_crf(cases, scheme, base, trials, seed, device, weights_per_sigma_draw)
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
    from lesionseg.crf import CRFParameters

    with open(path) as stream:
        return CRFParameters.from_mapping(yaml.safe_load(stream)["parameters"])
