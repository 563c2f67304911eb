"""Discover, validate and split a dataset's subjects (checkpoint manifest)."""

import logging
import sys
from pathlib import Path

from lesionseg.datasets import dataset_from_config
from lesionseg.datasets.manifest import build_manifest, format_problems, write_manifest, write_problems
from lesionseg.logs import log_to_file

log_to_file(snakemake.log[0])
dataset = dataset_from_config(snakemake.params.name, snakemake.params.entry)
manifest = build_manifest(dataset, threads=snakemake.threads, cache_path=Path(snakemake.params.cache))
if manifest.problems:
    table = format_problems(manifest.problems)
    if dataset.on_invalid == "fail":
        message = (
            f"dataset {dataset.name!r}: {len(manifest.invalid_subjects)} subject(s) with invalid inputs; "
            f"fix them, exclude them, or set 'on_invalid: skip'.\n{table}"
        )
        print(message, file=sys.__stderr__)
        raise SystemExit(message)
    logging.warning("leaving out %d invalid subject(s):\n%s", len(manifest.invalid_subjects), table)
write_problems(snakemake.output.invalid, manifest.problems)
write_manifest(snakemake.output.subjects, manifest)
