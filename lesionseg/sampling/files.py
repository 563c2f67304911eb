"""The per-subject sample file: every named set of centres in one ``.npz``.

Layout (numpy ``.npz``, compressed, readable with ``allow_pickle=False``):

- ``format``: the string ``lesionseg-samples-1``;
- ``sets``: str (n_sets,), the set names in the order they were given;
- ``metadata``: str, a JSON object (seed, subject, plan, ...);
- for each set ``<name>``: ``<name>/centres`` int32 (N, 3), ``<name>/classes`` uint8 (N,),
  ``<name>/class_counts_in_brain`` int64 (n_classes,), ``<name>/samples_per_class``
  int64 (n_classes,), ``<name>/probabilities`` float64 (n_classes,) and
  ``<name>/strategy`` str.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lesionseg.io import atomic_path
from lesionseg.sampling.centres import SampleSet

SAMPLE_FILE_FORMAT = "lesionseg-samples-1"
_ARRAY_FIELDS = {
    "centres": np.int32,
    "classes": np.uint8,
    "class_counts_in_brain": np.int64,
    "samples_per_class": np.int64,
    "probabilities": np.float64,
}


def write_samples(
    path: str | os.PathLike, sample_sets: Mapping[str, SampleSet], metadata: Mapping[str, Any]
) -> Path:
    """Write named sample sets and JSON-serialisable ``metadata`` to ``path`` (.npz), atomically."""
    for name in sample_sets:
        if not name or "/" in name:
            raise ValueError(f"sample set name {name!r} must be non-empty and free of '/'")
    try:
        metadata_json = json.dumps(dict(metadata), sort_keys=True)
    except (TypeError, ValueError) as err:
        raise ValueError(f"sample file metadata must be JSON-serialisable: {err}") from err
    arrays: dict[str, np.ndarray] = {
        "format": np.array(SAMPLE_FILE_FORMAT),
        "sets": np.array(list(sample_sets), dtype=str),
        "metadata": np.array(metadata_json),
    }
    for name, sample_set in sample_sets.items():
        for field, dtype in _ARRAY_FIELDS.items():
            arrays[f"{name}/{field}"] = np.asarray(getattr(sample_set, field), dtype=dtype)
        arrays[f"{name}/strategy"] = np.array(sample_set.strategy)
    path = Path(path)
    # Writing to an open file stops numpy from appending '.npz' to the temporary name.
    with atomic_path(path) as tmp, tmp.open("wb") as handle:
        np.savez_compressed(handle, **arrays)
    return path


def read_samples(path: str | os.PathLike) -> tuple[dict[str, SampleSet], dict[str, Any]]:
    """The named sample sets (in written order) and the metadata of a sample file."""
    with np.load(path, allow_pickle=False) as npz:
        if "format" not in npz.files or str(npz["format"]) != SAMPLE_FILE_FORMAT:
            raise ValueError(f"{path}: not a lesionseg sample file (format {SAMPLE_FILE_FORMAT})")
        sample_sets = {
            name: SampleSet(
                **{field: npz[f"{name}/{field}"] for field in _ARRAY_FIELDS},
                strategy=str(npz[f"{name}/strategy"]),
            )
            for name in npz["sets"].tolist()
        }
        return sample_sets, json.loads(str(npz["metadata"]))
