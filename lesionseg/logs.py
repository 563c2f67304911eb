"""Logging for the workflow's scripts: everything a step says goes to its rule's log."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def log_to_file(path: str | Path | None, level: int = logging.INFO, stdout: bool = False) -> None:
    """Send logging, warnings and stderr (progress bars) of this process to ``path``, and its standard output with
    ``stdout`` (for a library that reports by printing: nnU-Net).

    Each Snakemake rule declares a ``log:`` file; scripts call this first so a user
    finds a step's whole story there.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        stream = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
        sys.stderr = stream
        if stdout:
            sys.stdout = stream
        handlers = [logging.StreamHandler(stream)]
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers, force=True
    )
    logging.captureWarnings(True)
