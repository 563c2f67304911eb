"""What was done to a subject, with what, to which inputs: the provenance record."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lesionseg.io import atomic_path
from lesionseg.machine import package_versions

def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def write_json(path: str | Path, payload: Mapping[str, Any]) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def step_record(step: str, parameters: Mapping[str, Any], **details: Any) -> dict[str, Any]:
    """A step's record: its name, the parameters it used and what it measured."""
    return {"step": step, "parameters": dict(parameters), **details}


def write_step_record(path: str | Path, step: str, parameters: Mapping[str, Any], **details: Any) -> None:
    write_json(path, step_record(step, parameters, **details))


def assemble_provenance(
    subject: str,
    dataset: str,
    fingerprint: str,
    modalities: Iterable[str],
    steps: Iterable[Mapping[str, Any]],
    inputs: Iterable[str | Path],
) -> dict[str, Any]:
    """The full record of a preprocessed subject: its steps' records, input checksums, versions."""
    return {
        "dataset": dataset,
        "subject": subject,
        "modalities": list(modalities),
        "preprocessing_fingerprint": fingerprint,
        "steps": list(steps),
        "inputs": {str(p): {"sha256": sha256_file(p)} for p in inputs},
        "versions": package_versions(),
    }
