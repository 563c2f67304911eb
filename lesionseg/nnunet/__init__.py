"""nnU-Net v2 (Isensee et al. 2021) inside the pipeline: the model kind ``architecture: nnunet``.

Planning, preprocessing, training and prediction are done by the ``nnunetv2`` package itself; this package only
wraps it the way nnU-Net expects to be extended (a planner and a trainer subclass, its Python API), never patching
it:

- :mod:`~lesionseg.nnunet.layout`: the pipeline's preprocessed subjects in nnU-Net's raw layout
  (``dataset.json``, region-based BraTS schemes, the pipeline's folds as ``splits_final.json``) and nnU-Net's
  probabilities back as the scheme's class probabilities;
- :mod:`~lesionseg.nnunet.planning`: ``plan_and_preprocess`` with the integrity check, the chosen planner and its
  size options;
- :mod:`~lesionseg.nnunet.training`: one fold trained with the config's budget (a trainer subclass), resumed from
  nnU-Net's checkpoint, written as a lesionseg model file that carries nnU-Net's weights, plans and dataset.json;
- :mod:`~lesionseg.nnunet.prediction`: a model file's nnU-Net applied by nnU-Net's predictor (sliding window,
  Gaussian weighting, mirroring) to a preprocessed subject.

Every job sets ``nnUNet_raw``, ``nnUNet_preprocessed`` and ``nnUNet_results`` to folders below ``results/``
(:func:`nnunet_environment`), never the user's own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ARCHITECTURE = "nnunet"
"""The ``architecture:`` of a model trained and applied by nnU-Net."""
INFERENCE_DEFAULTS = {"mirroring": True, "tile_step_size": 0.5}
"""``inference:`` of an nnU-Net model: nnU-Net's defaults (mirroring averages the predictions of the 8 flips of
the image in 3D, 4 in 2D; tiles overlap by half)."""


@contextmanager
def nnunet_environment(raw: Path | None = None, preprocessed: Path | None = None, results: Path | None = None,
                       processes: int = 1, augmentation_processes: int = 0,
                       compile_network: bool = False) -> Iterator[None]:
    """nnU-Net's folders and process counts for the duration of a call (restored afterwards).

    nnU-Net reads them from the environment; its worker processes inherit them. A folder not given is unset, so
    that a user's own nnU-Net folders are never read or written.
    """
    values = {
        "nnUNet_raw": raw, "nnUNet_preprocessed": preprocessed, "nnUNet_results": results,
        "nnUNet_def_n_proc": processes, "nnUNet_n_proc_DA": augmentation_processes,
        # torch.compile costs minutes per job, a cost only long GPU trainings recoup (training: {compile: true})
        "nnUNet_compile": "true" if compile_network else "false",
    }
    saved = {key: os.environ.get(key) for key in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = str(Path(value).resolve()) if isinstance(value, Path) else str(value)
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
