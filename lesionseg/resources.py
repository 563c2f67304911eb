"""Resource estimates of the heavy jobs, for Snakemake's scheduler and for SLURM requests.

They grow with what a job reads and does, so a 1 mm BraTS cohort asks for more
than the 2 mm demo. They are deliberately generous (a job SLURM kills for
exceeding them costs more than idle reservation); a cluster profile can
override any of them with ``set-resources``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import nibabel
from nibabel.filebasedimages import ImageFileError

from lesionseg.training.settings import phase_epochs

# NIfTI images of the preprocessing grid compress about 3:1 (float32, zero outside the brain).
DECOMPRESSION = 3.0
# A training job beyond its volumes: interpreter, torch, the network, optimiser state and batches.
TRAINING_BASE_MB = 2500
# Seconds per training batch and per validation subject; conservative for a mid-range GPU and
# a 1 mm volume; a CPU run needs a larger limit (set-resources train_model:runtime=...).
SECONDS_PER_BATCH = 0.5
SECONDS_PER_VALIDATION = 20.0
# A job that runs a network or the CRF, beyond its arrays: interpreter, torch and its libraries, the networks.
TORCH_BASE_MB = 1500
# The CRF's working memory (both lattices, messages, marginals) per MB of the float32 probabilities and image it
# is given: on bench/crf.py's 1 mm BraTS-sized subject it peaked at 3.35 GB above its 0.65 GB of inputs, 10.4
# times their 321 MB; with headroom.
CRF_WORKING_FACTOR = 16.0


def float32_mb(path: str | os.PathLike) -> float:
    """Megabytes an image takes in memory as float32 (its voxels times channels, from the NIfTI header).

    Snakemake evaluates a job's resources once its inputs exist; a file not there
    yet (a dry run) counts 0, one that is not NIfTI its size times :data:`DECOMPRESSION`.
    """
    if not os.path.exists(path):
        return 0.0
    try:
        shape = nibabel.load(path).header.get_data_shape()
    except (OSError, ImageFileError):
        return DECOMPRESSION * os.path.getsize(path) / 2**20  # not an image this estimate can read: its bytes
    return 4 * math.prod(shape) / 2**20


def training_mem_mb(input_mb: float, n_train: int, subjects_per_epoch: int, validation_budget_mb: float) -> int:
    """Memory of a training job: the subjects one epoch holds in memory, decompressed, the network, and one batch
    of the validation's dense inference (``validation_budget_mb``, ``inference: memory_budget_mb``).

    ``input_mb`` is the compressed size of all the job's inputs (every training and validation subject).
    """
    held = min(1.0, subjects_per_epoch / max(1, n_train))
    return int(TRAINING_BASE_MB + DECOMPRESSION * input_mb * held + validation_budget_mb)


def inference_mem_mb(image_mb: float, n_channels: int, n_classes: int, n_networks: int,
                     memory_budget_mb: float) -> int:
    """Memory of a dense-inference job on one subject: what it holds, not what it reads.

    The image (``image_mb`` as float32, :func:`float32_mb`, of ``n_channels``
    channels), the probability maps of ``n_classes`` it stitches, softmaxes and
    maps to the dataset's classes (three float32 copies, plus a float64 sum for
    several networks), and one batch of segments, which ``memory_budget_mb``
    bounds (``inference: memory_budget_mb``; on a GPU the batch is in device
    memory and this is headroom for its pinned host copies).
    """
    probability_maps = image_mb / max(1, n_channels) * n_classes
    held = image_mb + probability_maps * (3 + (2 if n_networks > 1 else 0))
    return int(TORCH_BASE_MB + held + memory_budget_mb)


def crf_mem_mb(subject_mb: Sequence[float]) -> int:
    """Memory of a job that runs the CRF on subjects one at a time, holding all of them: ``subject_mb`` are each
    subject's arrays as float32 (probabilities, image, and for tuning its mask and truth, :func:`float32_mb`).

    Everything held, plus the CRF's working memory for the largest subject: a
    search over 50 validation subjects asks for their data and one CRF, not 50.
    """
    return int(TORCH_BASE_MB + sum(subject_mb) + CRF_WORKING_FACTOR * max(subject_mb, default=0.0))


def training_runtime_minutes(settings: Mapping[str, Any], phase: int, n_val: int) -> int:
    """Time limit of a training phase: its batches plus a dense validation of every validation subject per epoch."""
    epochs = phase_epochs(settings, phase)
    seconds = epochs * (settings["batches_per_epoch"] * SECONDS_PER_BATCH + n_val * SECONDS_PER_VALIDATION)
    return int(30 + seconds / 60)
