"""Resource estimates of the heavy jobs, for Snakemake's scheduler and for SLURM requests.

They grow with what a job reads and does, so a 1 mm BraTS cohort asks for more
than the 2 mm demo. They are deliberately generous (a job SLURM kills for
exceeding them costs more than idle reservation); a cluster profile can
override any of them with ``set-resources``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lesionseg.training.settings import phase_epochs

# NIfTI images of the preprocessing grid compress about 3:1 (float32, zero outside the brain).
DECOMPRESSION = 3.0
# A training job beyond its volumes: interpreter, torch, the network, optimiser state and batches.
TRAINING_BASE_MB = 2500
# Seconds per training batch and per validation subject; conservative for a mid-range GPU and
# a 1 mm volume; a CPU run needs a larger limit (set-resources train_model:runtime=...).
SECONDS_PER_BATCH = 0.5
SECONDS_PER_VALIDATION = 20.0


def training_mem_mb(input_mb: float, n_train: int, subjects_per_epoch: int) -> int:
    """Memory of a training job: the subjects one epoch holds in memory, decompressed, plus the network.

    ``input_mb`` is the compressed size of all the job's inputs (every training and validation subject).
    """
    held = min(1.0, subjects_per_epoch / max(1, n_train))
    return int(TRAINING_BASE_MB + DECOMPRESSION * input_mb * held)


def training_runtime_minutes(settings: Mapping[str, Any], phase: int, n_val: int) -> int:
    """Time limit of a training phase: its batches plus a dense validation of every validation subject per epoch."""
    epochs = phase_epochs(settings, phase)
    seconds = epochs * (settings["batches_per_epoch"] * SECONDS_PER_BATCH + n_val * SECONDS_PER_VALIDATION)
    return int(30 + seconds / 60)
